"""Brand owners' changes reach the running job without a restart: a brand registered after the
job started is enforced, a withdrawn one no longer is; propagation time is measured."""
from __future__ import annotations

import time

import pytest

from brand_signals.contract import brand_from_obj
from brand_signals.registry import Actor, BrandRegistry
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.kafka_admin import committed_offsets, end_offsets
from connectors.kafka_io import produce_lines
from tests.integration.test_kafka_job import listing, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration

# The bar for a change to be enforced everywhere (Meta's HMA aims at 10 minutes).
PROPAGATION_LIMIT_S = 10.0
# How long the wanted answer must hold on every probe before the probing stops (at worst, a
# change enforced at the limit, the original 15 s window left exactly this margin).
SETTLED_S = 5.0
BRAND = {"brand_id": "quillon", "name": "Quillon", "trademarks": ["Quillon"], "enforcement": "takedown",
         "version": 1}


def probe_until(settings, job, first_id: int, flagged: bool) -> tuple[float, int]:
    """Send a Quillon listing every 0.2 s; return (seconds until the first probe whose scan gave
    the wanted answer was sent, its id), that probe and every probe after it answered as wanted.

    The answers are read back while probing goes on: the end offsets of the listings sent so far
    are noted, and once the job has committed up to them, their decisions are final. Probing
    stops when the wanted answer has held on every probe for SETTLED_S, else after
    PROPAGATION_LIMIT_S + SETTLED_S (the limit plus the same margin, as before)."""
    t0 = time.monotonic()
    sent: dict[int, float] = {}
    i = first_id
    noted: tuple[dict[int, int], dict[int, float]] | None = None  # end offsets, and the probes they cover
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= PROPAGATION_LIMIT_S + SETTLED_S:
            wait_committed(settings, job)
            found = first_settled(sent, decided(settings), flagged)
            if found is None:
                raise AssertionError(f"no probe was {'flagged' if flagged else 'clear'} consistently")
            return sent[found], found
        send_at = time.monotonic()
        produce_lines(settings.bootstrap, settings.topics.listings, [listing(i, f"Quillon fountain pen {i}")],
                      "listing_id")
        sent[i] = time.monotonic() - t0
        i += 1
        assert job.poll() is None, (settings.state_dir / "job.log").read_text()[-3000:]
        if noted is None:
            noted = end_offsets(settings.bootstrap, settings.topics.listings), dict(sent)
        else:
            target, covered = noted
            done = committed_offsets(settings.bootstrap, settings.consumer_group, settings.topics.listings)
            if all(done.get(p, 0) >= o for p, o in target.items()):
                found = first_settled(covered, decided(settings), flagged)
                if found is not None and max(covered.values()) - covered[found] >= SETTLED_S:
                    return covered[found], found
                noted = None
        time.sleep(max(0.0, send_at + 0.2 - time.monotonic()))  # the check costs no probes


def decided(settings) -> set[str]:
    """The listings with a committed decision other than `clear`."""
    return {d["listing_id"] for d in read(settings, settings.topics.decisions) if d["action"] != "clear"}


def first_settled(sent: dict[int, float], flagged_ids: set[str], flagged: bool) -> int | None:
    """The first probe from which on every probe got the wanted answer."""
    for j in sorted(sent):
        if all((f"l{k}" in flagged_ids) == flagged for k in sent if k >= j):
            return j
    return None


def test_brand_registered_after_start_then_withdrawn(kafka_settings, tmp_path):
    s = kafka_settings
    job = start_job(s, "job.log")
    publisher = KafkaBrandPublisher.from_settings(s)
    registry = BrandRegistry.at_state_dir(tmp_path / "registry-state", publisher)
    try:
        produce_lines(s.bootstrap, s.topics.listings, [listing(1, "Quillon fountain pen")], "listing_id")
        wait_committed(s, job)
        assert read(s, s.topics.decisions) == []          # nobody protects Quillon yet

        registry.put(brand_from_obj(BRAND), Actor.admin())
        took, _ = probe_until(s, job, 100, flagged=True)
        print(f"\nregistration enforced {took:.2f} s after it was published")
        assert took <= PROPAGATION_LIMIT_S

        registry.withdraw("quillon", Actor.admin())
        took, _ = probe_until(s, job, 1000, flagged=False)
        print(f"withdrawal effective {took:.2f} s after it was published")
        assert took <= PROPAGATION_LIMIT_S
    finally:
        registry.close()
        publisher.close()
        stop(job)
