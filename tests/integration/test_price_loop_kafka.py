"""The price loop through a real broker: the job writes a verdict for each listing record it
scans (quiet: its content presents no brand; or "-"), reads them back, and so stops the
price-only re-posts of quiet listings before the scan, while a listing that presents a brand
is scanned on every price change and its price floor still decides."""
from __future__ import annotations

import json
import time

import jsonschema
import pytest

from connectors.kafka_admin import committed_offsets
from connectors.kafka_io import consume, produce_lines
from tests.conftest import ROOT
from tests.integration.test_kafka_job import POLL_S, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration

BRAND = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "authorized_sellers": ["vx-store"],
         "enforcement": "takedown", "version": 1, "min_price": {"amount": 100, "currency": "USD"}}
VERDICT_WAIT_S = 60
SCHEMA = json.loads((ROOT / "brand_signals/schemas/project/quiet-listings.schema.json").read_text())


def rec(lid: str, title: str, amount: float, t: int, **kw) -> bytes:
    return json.dumps({"listing_id": lid, "seller_id": "s-1", "event_time": 1_700_000_000_000 + t, "title": title,
                       "price": {"amount": amount, "currency": "USD"}, **kw}).encode()


def verdicts(settings, ends: dict[int, int] | None = None) -> dict[str, list[tuple[str, int]]]:
    """Per listing, the (verdict, listing offset) pairs on the loop's topic, in order; `ends`
    gets the offset after each partition's last verdict."""
    out: dict[str, list[tuple[str, int]]] = {}
    for k, v, p, o in consume(settings.bootstrap, settings.topics.quiet, stop_at_end=True):
        jsonschema.validate(v.decode(), SCHEMA)
        verdict, offset, lid = v.decode().split("\t", 2)
        assert lid == k.decode()
        out.setdefault(lid, []).append((verdict, int(offset)))
        if ends is not None:
            ends[p] = max(ends.get(p, 0), o + 1)
    return out


def wait_verdicts(settings, job, want: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Once each listing has at least `want[lid]` verdicts (they commit with the checkpoints)
    and the job has read them back (its committed offsets on the loop's topic)."""
    deadline = time.monotonic() + VERDICT_WAIT_S
    while True:
        assert job.poll() is None, job.log_path.read_text()[-3000:]
        target: dict[int, int] = {}
        got = verdicts(settings, target)
        if all(len(got.get(lid, ())) >= n for lid, n in want.items()):
            break
        assert time.monotonic() < deadline, got
        time.sleep(POLL_S)
    # (not the end offsets: a transaction's commit marker follows its last record, and the
    # job commits the offset after the last record it read)
    while True:
        done = committed_offsets(settings.bootstrap, settings.consumer_group, settings.topics.quiet)
        if all(done.get(p, 0) >= o for p, o in target.items()):
            return got
        assert time.monotonic() < deadline, (target, done)
        time.sleep(POLL_S)


def test_price_only_re_posts_of_quiet_listings_stop_and_a_presenting_one_is_scanned(kafka_settings):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(BRAND).encode()], "brand_id")
    first = [rec("q1", "Leather bag", 50, 1),                                      # presents nothing
             rec("c1", "Cordless drill 18V", 80, 1, description="Fits Veltrix batteries"),  # compatibility
             rec("w1", "Veltrlx cordless drill", 150, 1)]                          # weak: review over the floor
    produce_lines(s.bootstrap, s.topics.listings, first, "listing_id")
    job = start_job(s, "job.log")
    try:
        wait_committed(s, job)
        got = wait_verdicts(s, job, {"q1": 1, "c1": 1, "w1": 1})
        assert [v for v, _ in got["w1"]] == ["-"]
        assert got["q1"][0][0] != "-" and got["c1"][0][0] != "-"
        assert [(d["listing_id"], d["action"]) for d in read(s, s.topics.decisions)] == [("w1", "review")]

        # Price-only re-posts, the verdicts back: the quiet listings' stop before the scan (no
        # verdict for them), the presenting one's is scanned and its new price is under the floor.
        second = [rec("q1", "Leather bag", 50 - i, 2 + i) for i in range(5)]
        second += [rec("c1", "Cordless drill 18V", 70, 2, description="Fits Veltrix batteries"),
                   rec("w1", "Veltrlx cordless drill", 90, 2)]
        produce_lines(s.bootstrap, s.topics.listings, second, "listing_id")
        wait_committed(s, job)
        got = wait_verdicts(s, job, {"w1": 2})
        assert len(got["q1"]) == 1 and len(got["c1"]) == 1, got
        assert [v for v, _ in got["w1"]] == ["-", "-"]
        decisions = read(s, s.topics.decisions)
        assert [(d["listing_id"], d["action"]) for d in decisions] == [("w1", "review"), ("w1", "takedown")]
        assert "price" in {sig["kind"] for sig in decisions[-1]["signals"]}

        # Content that changes is scanned again, and presents the brand now.
        produce_lines(s.bootstrap, s.topics.listings, [rec("q1", "Veltrix leather bag", 45, 9)], "listing_id")
        wait_committed(s, job)
        got = wait_verdicts(s, job, {"q1": 2})
        assert got["q1"][-1][0] == "-"
        assert ("q1", "takedown") in [(d["listing_id"], d["action"]) for d in read(s, s.topics.decisions)]
    finally:
        stop(job)
