"""The feedback loop end to end on the real broker and the streaming job: a brand's removal
becomes a takedown, teaches the scanner a near-duplicate (taken down, as the owner asked) but
not a listing that shares only generic words or merely claims the removed image's digest;
appeals suspend the brand; a brand cannot remove another brand's listing, nor one the scanner
saw presenting nothing (refused, with the reason)."""
from __future__ import annotations

import json
import time

import pytest

from connectors.kafka_io import consume, produce_lines
from tests.integration.test_kafka_job import POLL_S, listing, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration

BRANDS = [
    {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown", "version": 1},
    {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1},
]
T = 1_700_000_100_000


def feedback(kind: str, lid: str, brand: str, t: int, actor: str) -> bytes:
    return json.dumps({"kind": kind, "listing_id": lid, "brand_id": brand, "event_time": t, "actor": actor}).encode()


def wait_for(settings, job, predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait_committed(settings, job)
        got = read(settings, settings.topics.decisions)
        if predicate(got):
            return got
        time.sleep(POLL_S)
    raise AssertionError(f"condition not met; decisions: {got}")


def latest(decisions: list[dict], lid: str) -> dict | None:
    mine = [d for d in decisions if d["listing_id"] == lid]
    return mine[-1] if mine else None


def test_removal_neighbour_suspension_and_refusal(kafka_settings):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(b).encode() for b in BRANDS], "brand_id")
    # A misspells the mark (a weak signal: review), so the brand's own removal is what takes it down.
    produce_lines(s.bootstrap, s.topics.listings, [
        listing(1, "Veltrex cordless drill VX-4471 18V with two batteries and case", seller="s-7",
                images=[{"uri": "a.jpg", "sha256": "a" * 64}]),
        listing(2, "Lumora night cream 50ml", seller="s-8"),
        listing(4, "Hard carry case for cordless drills", seller="s-4"),      # presents nothing
        listing(5, "Veltrix Wireless Bluetooth Headphones Black Over Ear Foldable", seller="s-5"),
        listing(9, "Lumora night cream LX-5521 hyaluron 50ml", seller="s-8"),  # lumora: enforcement review
    ] + [listing(10 + i, f"Veltrix angle grinder model {i} heavy duty kit", seller="s-9") for i in range(6)],
        "listing_id")
    job = start_job(s, "job.log")
    try:
        wait_committed(s, job)
        produce_lines(s.bootstrap, s.topics.feedback, [
            feedback("brand_removal", "l1", "veltrix", T, "veltrix-owner"),
            feedback("brand_removal", "l2", "veltrix", T, "veltrix-owner"),   # another brand's listing
            feedback("brand_removal", "l4", "veltrix", T + 1, "veltrix-owner"),  # seen, presents nothing
            feedback("brand_removal", "l5", "veltrix", T + 2, "veltrix-owner"),
            feedback("brand_removal", "l9", "lumora", T + 3, "lumora-owner"),
        ] + [feedback("brand_removal", f"ghost-{i}", "lumora", T + 4 + i, "lumora-owner")   # never seen:
             for i in range(51)], "listing_id")                                              # held, 50 a day
        got = wait_for(s, job, lambda d: (latest(d, "l1") or {}).get("action") == "takedown"
                       and latest(d, "l9") is not None)
        a = latest(got, "l1")
        assert a["brand_id"] == "veltrix" and a["signals"][0]["kind"] == "brand_removal"
        assert latest(got, "l2") is None or latest(got, "l2")["brand_id"] != "veltrix"

        assert latest(got, "l4") is None
        # B: the same item re-listed by another seller, title lightly edited, no mark in it at all
        # but the model number; and honest listings by other sellers that share only generic words
        # with a removed one, or only claim a removed listing's image digest: not neighbours.
        produce_lines(s.bootstrap, s.topics.listings, [
            listing(3, "cordless drill VX-4471 18V with two batteries and case NEW", seller="s-70",
                    images=[{"uri": "b.jpg", "sha256": "b" * 64}]),
            listing(6, "Wireless Bluetooth Headphones Black Over Ear Foldable", seller="s-60"),
            listing(7, "Garden hose reel with 30m hose", seller="s-61", images=[{"uri": "a.jpg", "sha256": "a" * 64}]),
            listing(8, "night cream LX-5521 hyaluron 50ml NEW", seller="s-80"),
        ], "listing_id")
        got = wait_for(s, job, lambda d: latest(d, "l3") is not None and latest(d, "l8") is not None)
        b = latest(got, "l3")
        assert b["action"] == "takedown" and b["brand_id"] == "veltrix"
        kinds = {sig["kind"] for sig in b["signals"]}
        assert "feedback_neighbor" in kinds and "brand_removal" not in kinds
        assert latest(got, "l6") is None and latest(got, "l7") is None
        c = latest(got, "l8")  # the brand's enforcement is review; the near-duplicate follows the removal
        assert (c["brand_id"], c["action"], c["signals"][0]["kind"]) == ("lumora", "takedown", "feedback_neighbor")

        # The brand removes six listings; reviewers uphold the appeals of all six: accuracy 0 < 0.9
        produce_lines(s.bootstrap, s.topics.feedback,
                      [feedback("brand_removal", f"l{10 + i}", "veltrix", T + 10 + i, "veltrix-owner")
                       for i in range(6)]
                      + [feedback("appeal_upheld", f"l{10 + i}", "veltrix", T + 20 + i, "reviewer-1")
                         for i in range(6)], "listing_id")
        got = wait_for(s, job, lambda d: all((latest(d, f"l{10 + i}") or {}).get("action") == "clear"
                                             for i in range(6)))
        # the next removal becomes a review
        produce_lines(s.bootstrap, s.topics.listings, [listing(30, "Veltrix drill press bench", seller="s-9")],
                      "listing_id")
        wait_for(s, job, lambda d: latest(d, "l30") is not None)
        produce_lines(s.bootstrap, s.topics.feedback,
                      [feedback("brand_removal", "l30", "veltrix", T + 40, "veltrix-owner")], "listing_id")
        got = wait_for(s, job, lambda d: any(x["listing_id"] == "l30" and x["signals"][0]["kind"] == "brand_removal"
                                             for x in d))
        r = [x for x in got if x["listing_id"] == "l30" and x["signals"][0]["kind"] == "brand_removal"][-1]
        assert r["action"] == "review" and r["signals"][0]["detail"]["suspended"] is True
    finally:
        stop(job)
    # The job stopped with a savepoint: its last transactions are committed, the topic is final.
    ledger = [json.loads(v) for _k, v, _p, _o in consume(s.bootstrap, s.topics.ledger, stop_at_end=True)]
    kinds = [(e["listing_id"], e["kind"]) for e in ledger]
    assert ("l2", "removal_refused") in kinds and ("l1", "removal_accepted") in kinds
    [l4] = [e for e in ledger if e["listing_id"] == "l4"]
    assert (l4["kind"], l4["refusal"], l4["actor"]) == ("removal_refused", "not_presented", "veltrix-owner")
    assert "presents nothing of any brand" in l4["reason"] and l4["judged_at"] > 0
    assert ("l30", "removal_demoted") in kinds
    ghosts = [e for e in ledger if e["listing_id"].startswith("ghost-")]
    assert sorted(e["kind"] for e in ghosts) == ["removal_held"] * 50 + ["removal_refused"]
    [capped] = [e for e in ghosts if e["kind"] == "removal_refused"]
    assert capped["refusal"] == "held_cap" and "already held for review for this brand today" in capped["reason"]
    assert [e["brand_status"] for e in ledger if e.get("brand_status")] == ["suspended"]  # the brand is told once
