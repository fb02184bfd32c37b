"""The benchmark chart is drawn from the results file alone (`python -m benchmarks.pipeline_bench --plot-only`)."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from benchmarks.pipeline_bench import RESULTS, main

pytestmark = pytest.mark.unit


def test_plot_only_redraws_the_chart_from_latest_json(tmp_path, capsys):
    shutil.copy(RESULTS / "latest.json", tmp_path / "latest.json")
    assert main(["--plot-only", "--results", str(tmp_path)]) == 0
    with Image.open(tmp_path / "latest.png") as img:
        assert img.format == "PNG" and img.width >= 1000 and img.height >= 400
    assert "drew" in capsys.readouterr().out
    # without the latency run (--quick) there is no latency panel, and the chart is still drawn
    res = json.loads((tmp_path / "latest.json").read_text())
    res.pop("latency_at_80pct")
    (tmp_path / "latest.json").write_text(json.dumps(res))
    assert main(["--plot-only", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "latest.png").stat().st_size > 10_000
