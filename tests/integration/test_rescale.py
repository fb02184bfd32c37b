"""Rescaling 1 -> 2 -> 1 through savepoints on the real broker (the embedded job, `zeroscan job
run --parallelism N`, which resumes from its latest savepoint). What each listing presented
lives in the job's keyed state, redistributed by key group when the parallelism changes, so
removals of listings scanned before a rescale are judged exactly as without it: accepted where
the listing presents the brand, refused where it does not; only a listing the job never saw is
held for review."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from connectors.kafka_io import produce_lines
from tests.conftest import ROOT, settings_env
from tests.integration.test_feedback_loop import feedback
from tests.integration.test_kafka_job import BRANDS, listing, read, stop, wait_committed

pytestmark = pytest.mark.integration

T = 1_700_000_300_000
JUDGED_TIMEOUT_S = 180


def start(settings, parallelism: int, log_name: str) -> subprocess.Popen:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / log_name, "wb") as log:
        job = subprocess.Popen([sys.executable, "-m", "zeroscan", "job", "run", "--parallelism", str(parallelism)],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **settings_env(settings)}, start_new_session=True)
    job.log_path = settings.state_dir / log_name     # for test_kafka_job.stop
    return job


def judged(settings, job, expected: dict[tuple[str, str, int], str]) -> dict[tuple[str, str, int], str]:
    """The ledger's verdict per removal (listing, brand, event time), once every expected one
    was judged."""
    deadline = time.monotonic() + JUDGED_TIMEOUT_S
    while True:
        wait_committed(settings, job)
        got = {(e["listing_id"], e["brand_id"], e["event_time"]): e["kind"]
               for e in read(settings, settings.topics.ledger)}
        if set(expected) <= set(got) or time.monotonic() > deadline:
            return {k: got.get(k) for k in expected}
        time.sleep(0.5)


def batch(first: int, n: int) -> tuple[list[bytes], dict[str, str]]:
    """n listings: even ones present Veltrix, odd ones nothing; and which brand they present."""
    lines, presents = [], {}
    for i in range(first, first + n):
        if i % 2 == 0:
            lines.append(listing(i, f"Veltrix cordless drill model {i}", seller=f"s-{i}"))
            presents[f"l{i}"] = "veltrix"
        else:
            lines.append(listing(i, f"Plain steel hammer size {i}", seller=f"s-{i}"))
            presents[f"l{i}"] = ""
    return lines, presents


def removals(presents: dict[str, str], t: int) -> tuple[list[bytes], dict[tuple[str, str, int], str]]:
    """Veltrix removes its listings (accepted); Lumora, which none presents, removes every one
    (refused: never counted against Veltrix); one removal names a listing never posted (held)."""
    events, expected = [], {}
    for lid, brand in sorted(presents.items()):
        if brand:
            expected[(lid, "veltrix", t + len(events))] = "removal_accepted"
            events.append(feedback("brand_removal", lid, "veltrix", t + len(events), "owner"))
        expected[(lid, "lumora", t + len(events))] = "removal_refused"
        events.append(feedback("brand_removal", lid, "lumora", t + len(events), "owner"))
    ghost = f"ghost-{t}"
    expected[(ghost, "veltrix", t + len(events))] = "removal_held"
    events.append(feedback("brand_removal", ghost, "veltrix", t + len(events), "owner"))
    return events, expected


def test_removals_are_judged_exactly_across_rescaling_1_2_1(kafka_settings):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(b).encode() for b in BRANDS], "brand_id")
    first, seen_first = batch(1, 16)
    second, seen_second = batch(101, 16)

    # 1. parallelism 1: the first listings are scanned; stop with a savepoint
    produce_lines(s.bootstrap, s.topics.listings, first, "listing_id")
    job = start(s, 1, "job-p1.log")
    try:
        wait_committed(s, job)
    finally:
        stop(job)

    # 2. parallelism 2 from that savepoint: removals of listings scanned before the rescale,
    #    then more listings; stop with a savepoint
    events, expected = removals(seen_first, T)
    produce_lines(s.bootstrap, s.topics.feedback, events, "listing_id")
    job = start(s, 2, "job-p2.log")
    try:
        assert judged(s, job, expected) == expected
        produce_lines(s.bootstrap, s.topics.listings, second, "listing_id")
        wait_committed(s, job)
    finally:
        stop(job)
    assert "parallelism 2" in (s.state_dir / "job-p2.log").read_text()

    # 3. back to parallelism 1: removals of the listings scanned at 2 (and, by the other brand,
    #    again of the first ones) are judged the same way
    events, expected3 = removals(seen_second, T + 1000)
    extra = {lid: "" for lid, brand in seen_first.items() if brand}      # Lumora again: refused
    more, expected_more = removals(extra, T + 2000)
    assert all(v == "removal_refused" for k, v in expected_more.items() if k[1] == "lumora")
    job = start(s, 1, "job-p1b.log")
    try:
        produce_lines(s.bootstrap, s.topics.feedback, events + more, "listing_id")
        want = {**expected3, **expected_more}
        assert judged(s, job, want) == want
    finally:
        stop(job)
    ledger = read(s, s.topics.ledger)
    held = sorted(e["listing_id"] for e in ledger if e["kind"] == "removal_held")
    assert held == [f"ghost-{T}", f"ghost-{T + 1000}", f"ghost-{T + 2000}"]
    takedowns = {d["listing_id"] for d in read(s, s.topics.decisions)
                 if d["signals"][0]["kind"] == "brand_removal" and d["action"] == "takedown"}
    assert takedowns == {lid for lid, b in {**seen_first, **seen_second}.items() if b}
