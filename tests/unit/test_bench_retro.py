"""`make bench-retro` end to end at a small size: the worker's pre-filter over a real store, the
job's scan of the candidates, and the results file (the scan's rows changed shape once and the
bench failed only at its last step)."""
from __future__ import annotations

import json

import pytest

from benchmarks.retro import main

pytestmark = pytest.mark.unit


def test_the_retro_bench_runs_and_reports_what_it_found(tmp_path):
    out = tmp_path / "retro.json"
    assert main(["--listings", "3000", "--processes", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["live_listings"] == res["distinct_titles"] == 3000
    assert res["candidates"] == res["worker_prefilter_by_processes"]["1"]["candidates"] > 0
    assert 0 < res["presenting_new_brand"] <= res["candidates"]
    assert res["presenting_not_candidates"] == 0
    assert res["flagged_new_brand"] == res["presenting_new_brand"] and res["recall"] == 1.0
