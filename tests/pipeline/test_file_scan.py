"""The job graph on the local PyFlink mini-cluster with file sources and sinks (`zeroscan scan`)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from pipelines.scanner_job import run_file_scan
from tests.conftest import ROOT, SAMPLES
from tests.unit.test_contract import SCHEMAS
from tests.unit.test_record_schemas import check_decision
from zeroscan.settings import Settings

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def sample_scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan")
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp / "state")
    out, dead = tmp / "decisions.jsonl", tmp / "dead.jsonl"
    res = run_file_scan(settings, SAMPLES / "brands.jsonl", SAMPLES / "listings.jsonl", out, dead)
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    dead_letters = [json.loads(line) for line in dead.read_text().splitlines()]
    return res, decisions, dead_letters


def test_decisions_are_contract_valid(sample_scan):
    res, decisions, _ = sample_scan
    schema = json.loads((SCHEMAS / "decision.schema.json").read_text())
    assert res.decisions == len(decisions) > 0
    for d in decisions:
        jsonschema.validate(d, schema)
        check_decision(d)       # the project's format: event time and the file line it came from
    listings = (SAMPLES / "listings.jsonl").read_bytes().split(b"\n")   # one line is not UTF-8 (a dead letter)
    for d in decisions:
        assert d["source"]["file"] == str((SAMPLES / "listings.jsonl").resolve())
        src = json.loads(listings[d["source"]["line"] - 1])
        assert src["listing_id"] == d["listing_id"]


def test_what_the_sample_presents_is_flagged_for_the_right_brand(sample_scan):
    _, decisions, _ = sample_scan
    first = {}
    for d in decisions:
        first.setdefault(d["listing_id"], d)
    expected = {
        "demo-001": ("acme-audio", "takedown"),   # exact mark, unauthorized seller, below the price floor
        "demo-003": ("lumora", "review"),         # homoglyph; the brand asks for review
        "demo-004": ("veltrix", "notify"),        # spaced letters; the brand asks for notify
        "demo-005": ("kestrel", "review"),        # misspelt mark: weaker evidence, so review
        "demo-006": ("kestrel", "takedown"),      # mark only in the brand field
        "demo-010": ("lumora", "review"),         # spaced leetspeak
        "demo-012": ("acme-audio", "takedown"),   # second word mark of the brand
    }
    got = {lid: (d["brand_id"], d["action"]) for lid, d in first.items() if lid in expected}
    assert got == expected


def test_clean_compatible_and_authorized_listings_are_not_flagged(sample_scan):
    _, decisions, _ = sample_scan
    flagged = {d["listing_id"] for d in decisions}
    assert flagged.isdisjoint({"demo-002", "demo-007", "demo-008", "demo-009", "demo-011"})


def test_delete_of_a_flagged_listing_is_retracted(sample_scan):
    _, decisions, _ = sample_scan
    mine = [d for d in decisions if d["listing_id"] == "demo-001"]
    assert [d["action"] for d in mine] == ["takedown", "clear"]
    assert mine[-1]["brand_id"] == "acme-audio"


def test_broken_records_go_to_the_dead_letter_output_with_reasons(sample_scan):
    _, _, dead = sample_scan
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 4
    assert any("seller_id" in r for r in reasons)
    assert any("price.amount" in r for r in reasons)
    assert sum("not valid UTF-8 JSON" in r for r in reasons) == 2
    assert all(d["origin"]["file"].endswith("listings.jsonl") for d in dead)


def test_feedback_file_is_merged_by_event_time(tmp_path):
    """File mode with --feedback: a removal acts on the listing posted before it, and a
    near-duplicate posted after it is flagged from what the removal taught."""
    t0 = 1_767_225_600_000
    brands = tmp_path / "brands.jsonl"
    brands.write_text(json.dumps({"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"],
                                  "enforcement": "takedown", "version": 1}) + "\n")
    listings = tmp_path / "listings.jsonl"
    listings.write_text("\n".join(json.dumps(r) for r in [
        {"listing_id": "a", "seller_id": "s-1", "event_time": t0,
         "title": "Veltrex cordless drill VX-4471 18V two batteries case"},
        {"listing_id": "b", "seller_id": "s-2", "event_time": t0 + 2000,
         "title": "cordless drill VX-4471 18V two batteries case NEW"},
    ]) + "\n")
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"kind": "brand_removal", "listing_id": "a", "brand_id": "veltrix",
                                    "event_time": t0 + 1000, "actor": "owner"}) + "\n")
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    out = tmp_path / "d.jsonl"
    res = run_file_scan(settings, brands, listings, out, tmp_path / "dead.jsonl", feedback=feedback)
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    by = {}
    for d in decisions:
        by.setdefault(d["listing_id"], []).append(d)
    assert [d["action"] for d in by["a"]] == ["review", "takedown"]       # misspelt mark, then the removal
    assert by["a"][-1]["signals"][0]["kind"] == "brand_removal"
    assert by["b"][0]["action"] == "takedown"
    assert "feedback_neighbor" in {s["kind"] for s in by["b"][0]["signals"]}
    assert res.ledger_events == 1
    ledger = [json.loads(line) for line in (tmp_path / "d.ledger.jsonl").read_text().splitlines()]
    assert ledger[0]["kind"] == "removal_accepted"


def test_every_brand_a_listing_presents_gets_its_decision_and_its_own_clear(tmp_path):
    """Per listing and brand through the job's SQL: two decisions for a listing presenting two
    brands, a `clear` for the brand it stops presenting only, a delete clearing the rest, and a
    removal and an appeal acting on their own brand. Clears are written by the job (JSON_OBJECT,
    which orders the keys by name): the same compact UTF-8 JSON as the scan's own records."""
    import orjson

    t0 = 1_767_225_600_000
    M1 = 'm1 "é"/\\'     # escaped alike by the scan (orjson) and the job (JSON_OBJECT)
    brands = tmp_path / "brands.jsonl"
    brands.write_text("".join(json.dumps(b) + "\n" for b in [
        {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown", "version": 1},
        {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1}]))
    both = "Veltrix drill with Lumora night cream"
    listings = tmp_path / "listings.jsonl"
    listings.write_text("".join(json.dumps(r) + "\n" for r in [
        {"listing_id": M1, "seller_id": "s-1", "event_time": t0, "title": both},
        {"listing_id": "m2", "seller_id": "s-2", "event_time": t0 + 1, "title": both},
        {"listing_id": M1, "seller_id": "s-1", "event_time": t0 + 2, "title": both},           # unchanged
        {"listing_id": M1, "seller_id": "s-1", "event_time": t0 + 3, "title": "Veltrix drill, \"cordless\" \u00e9"},
        {"listing_id": M1, "seller_id": "s-1", "event_time": t0 + 4, "op": "delete"},
        {"listing_id": "m2", "seller_id": "s-2", "event_time": t0 + 7, "title": both},           # after the appeal
    ]))
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text("".join(json.dumps(r) + "\n" for r in [
        {"kind": "brand_removal", "listing_id": "m2", "brand_id": "lumora", "event_time": t0 + 5, "actor": "owner"},
        {"kind": "appeal_upheld", "listing_id": "m2", "brand_id": "lumora", "event_time": t0 + 6, "actor": "rev"}]))
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    out = tmp_path / "d.jsonl"
    run_file_scan(settings, brands, listings, out, tmp_path / "dead.jsonl", feedback=feedback)
    lines = out.read_bytes().splitlines()
    decisions = [json.loads(line) for line in lines]
    by: dict[str, list] = {}
    for d in decisions:
        by.setdefault(d["listing_id"], []).append((d["brand_id"], d["action"]))
        check_decision(d)
    assert by[M1] == [("lumora", "review"), ("veltrix", "takedown"), ("lumora", "clear"), ("veltrix", "clear")]
    assert by["m2"] == [("lumora", "review"), ("veltrix", "takedown"), ("lumora", "takedown"), ("lumora", "clear")]
    clears = [(line, d) for line, d in zip(lines, decisions) if d["action"] == "clear"]
    assert [d["signals"][0]["detail"]["reason"] for _l, d in clears] == [
        "no longer presents the brand", "listing deleted", "appeal upheld: reinstated (rev)"]
    order = ["listing_id", "seller_id", "brand_id", "action", "score", "signals", "decided_at", "event_time", "source"]
    for line, d in clears:
        assert list(d) == sorted(order) and line == orjson.dumps(d)   # the bytes orjson writes for it
        assert d["score"] == 0 and d["signals"][0] == {"kind": "rescan", "score": 0.0, "detail": d["signals"][0]["detail"]}
    assert clears[0][1]["source"] == {"file": str(listings.resolve()), "line": 4}
    assert clears[0][1]["event_time"] == t0 + 3 and clears[1][1]["event_time"] == t0 + 4
    assert clears[2][1]["source"] == {"file": str(feedback.resolve()), "line": 2}
    for line, d in zip(lines, decisions):
        assert line == orjson.dumps(d)


def test_a_job_started_after_an_in_process_scan_launches_its_own_gateway(sample_scan, tmp_path):
    """A local scan runs its Python workers in the calling process, and their start sets
    PYFLINK_GATEWAY_DISABLED there. A process that scanned once (the module fixture, in this
    process) and then starts a job as a child passes the variable on; the child must still start
    its own gateway and scan."""
    out = tmp_path / "decisions.jsonl"
    env = {**os.environ, "PYFLINK_GATEWAY_DISABLED": "true", "ZEROSCAN_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "zeroscan", "scan", "--brands", str(SAMPLES / "brands.jsonl"),
                           "--listings", str(SAMPLES / "listings.jsonl"), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(out.read_text().splitlines()) == sample_scan[0].decisions


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_row_at_a_time_scan_decides_as_the_vectorised_one(sample_scan, tmp_path, mode):
    """ZEROSCAN_SCAN_UDF=row (one record per Python call, kept to measure the crossing) gives
    the sample's decisions and dead letters record for record, in PyFlink's process mode and in
    its thread mode (Python inside the JVM), which runs only such functions. A job of its own
    (`zeroscan scan`): thread mode is set before the JVM starts."""
    _, decisions, dead_letters = sample_scan
    out = tmp_path / "decisions.jsonl"
    env = {**os.environ, "ZEROSCAN_STATE_DIR": str(tmp_path / "state"), "ZEROSCAN_SCAN_UDF": "row",
           "ZEROSCAN_FLINK_OPTS": f"python.execution-mode={mode};restart-strategy.type=none"}
    done = subprocess.run([sys.executable, "-m", "zeroscan", "scan", "--brands", str(SAMPLES / "brands.jsonl"),
                           "--listings", str(SAMPLES / "listings.jsonl"), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    def same(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("decided_at", "dead_at")}
    assert [same(json.loads(x)) for x in out.read_text().splitlines()] == [same(d) for d in decisions]
    dead = out.with_name("decisions.dead-letter.jsonl")
    assert [same(json.loads(x)) for x in dead.read_text().splitlines()] == [same(d) for d in dead_letters]
