"""Retroactive matching and clears on the real broker and job: listings live before a brand is
approved get their decision after the approval without being re-posted; a brand gaining a mark
re-checks only against that brand; authorising a seller and withdrawing the brand emit `clear`
for its open flags; the retro worker picks up where it stopped after a kill -9."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from brand_signals.contract import brand_from_obj
from brand_signals.registry import Actor, BrandRegistry
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.kafka_io import produce_lines
from tests.conftest import ROOT, settings_env
from tests.integration.test_kafka_job import end, listing, read, start_job, stop, wait_committed
from tests.unit.test_record_schemas import check_decision

pytestmark = pytest.mark.integration

VELTRIX = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown",
           "version": 1}
QUILLON = {"brand_id": "quillon", "name": "Quillon", "trademarks": ["Quillon"], "enforcement": "review",
           "version": 1}
WAIT_S = 90.0
HANDLED = re.compile(r"brand (\S+) v(\d+) \(([^)]*)\): (\d+) live listings read, (\d+) candidates, "
                     r"(\d+) open flags, (\d+) rescans")


def start_retro(settings, log_name: str) -> subprocess.Popen:
    with open(settings.state_dir / log_name, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "zeroscan", "retro", "run"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **settings_env(settings)},
                                start_new_session=True)


def handled(settings, log_name: str) -> list[tuple]:
    """The Quillon changes the worker handled: (brand, version, reason, live listings read,
    candidates, open flags, rescans). (Veltrix, there at the worker's first start, is handled
    too: a new worker re-checks every brand once.)"""
    text = (settings.state_dir / log_name).read_text()
    return [(m[1], int(m[2]), m[3], *map(int, m.groups()[3:])) for m in HANDLED.finditer(text)
            if m[1] == "quillon"]


def wait_for(settings, procs, what, pred, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p, log in procs:
            assert p.poll() is None, (settings.state_dir / log).read_text()[-3000:]
        got = read(settings, settings.topics.decisions)
        if pred(got):
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s}s; decisions {[(d['listing_id'], d['brand_id'], d['action']) for d in got]}")


def of(decisions, lid: str, action: str | None = None) -> list[dict]:
    return [d for d in decisions if d["listing_id"] == lid and (action is None or d["action"] == action)]


def test_retroactive_matching_and_clears(kafka_settings, tmp_path):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(VELTRIX).encode()], "brand_id")
    live = [listing(1, "Quillon fountain pen"), listing(2, "Quillon ink cartridges", seller="s-2"),
            listing(3, "Plain graphite pencil"), listing(4, "Veltrix cordless drill"),
            listing(5, "Nimbra fountain pen")]
    produce_lines(s.bootstrap, s.topics.listings, live, "listing_id")
    job = start_job(s, "job.log")
    retro = start_retro(s, "retro.log")
    procs = [(job, "job.log"), (retro, "retro.log")]
    publisher = KafkaBrandPublisher.from_settings(s)
    registry = BrandRegistry.at_state_dir(tmp_path / "registry", publisher)
    try:
        wait_committed(s, job)
        assert [(d["listing_id"], d["brand_id"]) for d in read(s, s.topics.decisions)] == [("l4", "veltrix")]

        # an owner registers Quillon: pending, nothing happens; the operator approves it
        registry.put(brand_from_obj(QUILLON), Actor.account("alice"))
        registry.approve("quillon", Actor.admin())
        got = wait_for(s, procs, "approval", lambda ds: of(ds, "l1") and of(ds, "l2"))
        for lid in ("l1", "l2"):
            (d,) = of(got, lid)
            check_decision(d)
            assert (d["brand_id"], d["action"]) == ("quillon", "review")
            assert d["rescan"] == {"brand_id": "quillon", "brand_version": 1, "reason": "brand approved"}
            assert d["source"]["topic"] == s.topics.listings   # the listing record re-checked
        assert not of(got, "l3") and not of(got, "l5")

        # Quillon gains a mark: only listings that mark could touch are candidates
        v2 = dataclasses.replace(brand_from_obj(QUILLON), version=2, trademarks=("Quillon", "Nimbra"))
        registry.put(v2, Actor.admin())
        got = wait_for(s, procs, "gained mark", lambda ds: of(ds, "l5"))
        assert of(got, "l5")[0]["rescan"]["reason"] == "brand gained marks or images"
        deadline = time.monotonic() + 10
        while len(handled(s, "retro.log")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        approval, gain = handled(s, "retro.log")[:2]
        assert approval[:5] == ("quillon", 1, "brand approved", 5, 2)      # 5 live read, l1 and l2 kept
        assert gain[:6] == ("quillon", 2, "brand gained marks or images", 5, 1, 2)   # l5; open l1, l2
        assert len(of(got, "l1")) == 1 and len(of(got, "l4")) == 1       # re-checks changed nothing else

        # a kill -9 of the retro worker, then a restart: it resumes from its store
        os.killpg(retro.pid, signal.SIGKILL)
        retro.wait()
        retro = start_retro(s, "retro-2.log")
        procs[1] = (retro, "retro-2.log")

        # the seller of l2 is authorised: l2's flag is cleared
        v3 = dataclasses.replace(v2, version=3, authorized_sellers=frozenset({"s-2"}))
        registry.put(v3, Actor.admin())
        got = wait_for(s, procs, "authorisation", lambda ds: of(ds, "l2", "clear"))
        (c,) = of(got, "l2", "clear")
        check_decision(c)
        assert c["brand_id"] == "quillon" and c["signals"][0]["detail"]["reason"].startswith("seller authorised")
        assert not of(got, "l1", "clear") and not of(got, "l5", "clear")
        # the restarted worker handled only the new change (not the approval or the gain again)
        deadline = time.monotonic() + 10
        while not handled(s, "retro-2.log") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [h[:3] for h in handled(s, "retro-2.log")] == [("quillon", 3, "seller authorised")]

        # Quillon is withdrawn: its open flags (l1, l5) are cleared; Veltrix's stays
        registry.withdraw("quillon", Actor.admin())
        got = wait_for(s, procs, "withdrawal", lambda ds: of(ds, "l1", "clear") and of(ds, "l5", "clear"))
        for lid in ("l1", "l5"):
            (c,) = of(got, lid, "clear")
            check_decision(c)
            assert c["signals"][0]["detail"]["reason"].startswith("brand withdrawn")
        assert not of(got, "l4", "clear")
        time.sleep(3)   # nothing more comes: each transition once
        per = Counter((d["listing_id"], d["action"]) for d in read(s, s.topics.decisions))
        assert max(per.values()) == 1, per
        assert read(s, s.topics.dead_letter) == []
    finally:
        registry.close()
        publisher.close()
        try:
            stop(job)
        finally:
            for p, _ in procs[1:]:
                end(p)
