"""The job's optimised plan (Flink's own `explain`, no job run): every record is scanned once
and its per-brand transition runs once, whatever number of outputs read them. Four sinks (or
one UNION ALL query in file mode) read the same views; a plan that copies the Python scan runs
it, its catalogue and its feedback state once per copy."""
from __future__ import annotations

import dataclasses
import re

import pytest

from brand_signals.scanner import MODEL_VERSION
from pipelines.scan_config import BrandInput, ScanConfig
from pipelines.scanner_job import (build_kafka_statements, define_scan, file_results, make_table_env,
                                   register_file_io)
from zeroscan.settings import Settings

pytestmark = pytest.mark.pipeline


def _optimised(plan: str) -> str:
    return plan.split("== Optimized Execution Plan ==", 1)[1]


def _counts(plan: str) -> tuple[int, int, int]:
    """Python scans, per listing x brand LAG steps, keyed steps (OVER aggregates) in the plan."""
    opt = _optimised(plan)
    return (opt.count("PythonCalc("), len(re.findall(r"OverAggregate\(partitionBy=\[listing_id, b\]", opt)),
            opt.count("OverAggregate("))


def test_kafka_job_scans_each_record_once_and_keeps_one_transition(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", bootstrap="127.0.0.1:9")
    _t_env, stmts = build_kafka_statements(settings, 1)
    plan = stmts.explain()
    for sink in ("decisions_kafka", "status_kafka", "dead_letter_kafka", "ledger_kafka"):
        assert f"Sink(table=[default_catalog.default_database.{sink}]" in plan
    # one scan; one per-pair LAG; the keyed input (newest offset, fingerprint, feedback
    # context), the state-key step, the brands ever flagged
    assert _counts(plan) == (1, 1, 4), _optimised(plan)


def test_file_mode_scans_each_record_once(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    t_env = make_table_env(settings, 1, kafka=False, overrides={"state.backend.type": "hashmap",
                                                                "execution.checkpointing.interval": None})
    tagged = tmp_path / "in.tagged"
    tagged.write_text("")
    register_file_io(t_env, tagged)
    define_scan(t_env, ScanConfig(MODEL_VERSION, BrandInput(path=str(tmp_path / "brands.jsonl")), settings.signals),
                settings.unchanged_recheck_s)
    assert _counts(file_results(t_env).explain()) == (1, 1, 4)


def test_unchanged_re_posts_stop_before_the_scan(tmp_path):
    """The keyed step's verdict (zs_repost_stop: an unchanged re-post, or a price-only one of a
    quiet listing) is a Java filter below the Python scan: a re-post that stops there never
    crosses into Python; nor does any record of the price loop's own topic."""
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", bootstrap="127.0.0.1:9")
    _t_env, stmts = build_kafka_statements(settings, 1)
    opt = _optimised(stmts.explain())
    scan = opt.index("PythonCalc(")
    below = opt[scan:]
    stop = re.search(r"where=\[\(\(input_kind <> 'quiet'\) AND NOT\((w0\$o\d+)\)\)\]", below)
    assert stop is not None, below[:3000]
    verdict = below.index("zs_repost_stop($")
    assert below.index(" AS " + stop.group(1), verdict) < below.index("])", verdict)
    assert stop.start() < verdict < below.index("zs_content_fingerprint(")
    # the price-free fingerprint: once per record, for those the cache lets through
    assert opt.count("zs_price_free_fingerprint(") == 1
    assert below.index("Exchange(distribution=[hash[lid]])") < below.index("zs_price_free_fingerprint(") \
        < below.index("zs_changed_here(")
    assert "Sink(table=[default_catalog.default_database.quiet_kafka]" in opt


def test_without_the_price_loop_no_verdict_is_read_or_written(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", bootstrap="127.0.0.1:9",
                                   price_loop=False)
    _t_env, stmts = build_kafka_statements(settings, 1)
    plan = stmts.explain()
    assert "quiet_kafka]" not in _optimised(plan) and "zs_price_free_fingerprint(" not in plan
    assert settings.topics.quiet not in plan


def test_most_unchanged_re_posts_stop_before_the_keyed_exchange(tmp_path):
    """The cache in front of the keyed step (zs_changed_here) is evaluated once per record, in
    the step that reads it, below the keyed exchange: a re-post it stops never crosses to
    another task. Evaluated twice, its second call would stop every record."""
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", bootstrap="127.0.0.1:9")
    assert settings.unchanged_cache_slots > 0
    _t_env, stmts = build_kafka_statements(settings, 1)
    opt = _optimised(stmts.explain())
    assert opt.count("zs_changed_here(") == 1, opt
    assert opt.count("zs_content_fingerprint(") == 1, opt
    # the listing id is read once per record too (the planner inlined the `lid` column into
    # the cache's argument, a second pass over every record, until ListingId was declared
    # non-deterministic, which keeps it in a step of its own)
    assert opt.count("zs_listing_id(") == 1, opt
    keyed = opt.index("Exchange(distribution=[hash[lid]])")
    assert keyed < opt.index("zs_changed_here(") < opt.index("TableSourceScan(")
    assert re.search(r"where=\[SEARCH\(fp, Sarg\[\(-∞\.\._UTF-16LE''", opt[keyed:]) or \
        re.search(r"where=\[\(fp IS NULL OR \(fp <> ''\)\)\]", opt[keyed:]), opt[keyed:][:3000]


def test_without_the_cache_only_the_keyed_step_stops_them(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", bootstrap="127.0.0.1:9",
                                   unchanged_cache_slots=0)
    _t_env, stmts = build_kafka_statements(settings, 1)
    opt = _optimised(stmts.explain())
    assert "zs_changed_here(" not in opt and opt.count("zs_content_fingerprint(") == 1
    assert opt.count("zs_listing_id(") == 1, opt
