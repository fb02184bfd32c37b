"""Brand owners' changes reach the running job without a restart: a brand registered after the
job started is enforced, a withdrawn one no longer is; propagation time is measured."""
from __future__ import annotations

import time

import pytest

from brand_signals.contract import brand_from_obj
from brand_signals.registry import Actor, BrandRegistry
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.kafka_io import produce_lines
from tests.integration.test_kafka_job import listing, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration

# The bar for a change to be enforced everywhere (Meta's HMA aims at 10 minutes).
PROPAGATION_LIMIT_S = 10.0
BRAND = {"brand_id": "quillon", "name": "Quillon", "trademarks": ["Quillon"], "enforcement": "takedown",
         "version": 1}


def probe_until(settings, job, first_id: int, flagged: bool) -> tuple[float, int]:
    """Send a Quillon listing every 0.2 s; return (seconds until the first probe whose scan gave
    the wanted answer was sent, its id)."""
    t0 = time.monotonic()
    sent: dict[int, float] = {}
    i = first_id
    while time.monotonic() - t0 < PROPAGATION_LIMIT_S + 5:
        produce_lines(settings.bootstrap, settings.topics.listings, [listing(i, f"Quillon fountain pen {i}")],
                      "listing_id")
        sent[i] = time.monotonic() - t0
        i += 1
        time.sleep(0.2)
    wait_committed(settings, job)
    decided = {d["listing_id"] for d in read(settings, settings.topics.decisions) if d["action"] != "clear"}
    for j in sorted(sent):
        if (f"l{j}" in decided) == flagged and all((f"l{k}" in decided) == flagged for k in sent if k > j):
            return sent[j], j
    raise AssertionError(f"no probe was {'flagged' if flagged else 'clear'} consistently")


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
