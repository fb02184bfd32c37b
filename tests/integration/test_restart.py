"""Restarts after the feedback loop has run, on the real broker: the job's sinks are
transactional, so `decisions` and `feedback-ledger` hold commit markers, and aborted
transactions (a hard kill, or a producer that gave up) leave offsets a read_committed reader
never receives. The job must restart (savepoint and kill -9) and the API must start on such
topics, and each must keep working: new listings decided, new removals judged, signals and
standing right (aborted records ignored)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests
from confluent_kafka import Producer

from brand_signals.contract import brand_from_obj
from brand_signals.registry import ALL_PRIVILEGES, Actor, BrandRegistry
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.kafka_io import produce_lines
from tests.conftest import ROOT, settings_env
from tests.integration.test_feedback_loop import feedback, latest, wait_for
from tests.integration.test_kafka_job import listing, read, start_job, stop
from zeroscan.accounts import AccountStore

pytestmark = pytest.mark.integration

BRAND = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown",
         "version": 1}
T = 1_700_000_200_000
API_START_TIMEOUT_S = 60


def aborted(bootstrap: str, topic: str, records: list[tuple[str, dict]]) -> None:
    """Write records in a transaction and abort it: no read_committed reader may see them."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-abort-{uuid.uuid4()}"})
    p.init_transactions(30)
    p.begin_transaction()
    for key, obj in records:
        p.produce(topic, key=key.encode(), value=json.dumps(obj).encode())
    p.flush(30)
    p.abort_transaction(30)


def judged(settings, job, lid: str) -> list[dict]:
    """Wait until the removal of `lid` was judged into a takedown."""
    return wait_for(settings, job, lambda d: any(x["listing_id"] == lid and x["signals"][0]["kind"] == "brand_removal"
                                                 and x["action"] == "takedown" for x in d), timeout_s=120)


def start_api(settings, port: int) -> subprocess.Popen:
    with open(settings.state_dir / "api.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "zeroscan", "api", "serve", "--port", str(port)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **settings_env(settings)},
                                start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_and_api_restart_after_removals_with_aborted_transactions(kafka_settings):
    s = kafka_settings
    s.state_dir.mkdir(parents=True, exist_ok=True)
    token = AccountStore.at_state_dir(s.state_dir).create("alice")[1]
    publisher = KafkaBrandPublisher.from_settings(s)
    with BrandRegistry.at_state_dir(s.state_dir, publisher) as reg:
        reg.put(brand_from_obj(BRAND), Actor.account("alice"))           # an owner's submission ...
        reg.approve("veltrix", Actor.admin(), grant=ALL_PRIVILEGES)      # ... enforced once approved
    publisher.close()
    # Aborted records that would change the brand's standing and open signals if they were read.
    aborted(s.bootstrap, s.topics.ledger, [("ghost", {"kind": "removal_accepted", "listing_id": "ghost",
                                                      "brand_id": "veltrix", "event_time": T, "actor": "x"})])
    aborted(s.bootstrap, s.topics.decisions, [("ghost", {"listing_id": "ghost", "seller_id": "s", "brand_id": "veltrix",
                                                         "action": "takedown", "score": 1.0, "signals": [],
                                                         "decided_at": T})])

    # 1. first run: a misspelling (review) that the owner removes: judged, written to the ledger
    produce_lines(s.bootstrap, s.topics.listings, [listing(1, "Veltrex cordless drill 18V kit", seller="s-7")],
                  "listing_id")
    job = start_job(s, "job-1.log")
    try:
        wait_for(s, job, lambda d: latest(d, "l1") is not None)
        produce_lines(s.bootstrap, s.topics.feedback, [feedback("brand_removal", "l1", "veltrix", T, "alice")],
                      "listing_id")
        judged(s, job, "l1")
    finally:
        stop(job)                                        # savepoint

    # 2. restart from the savepoint: a new listing is decided, a new removal judged; then kill -9
    #    with output in flight (its open transactions are aborted when the next run starts)
    job = start_job(s, "job-2.log")
    try:
        produce_lines(s.bootstrap, s.topics.listings, [listing(2, "Veltrex angle grinder", seller="s-8")],
                      "listing_id")
        wait_for(s, job, lambda d: latest(d, "l2") is not None, timeout_s=180)
        produce_lines(s.bootstrap, s.topics.feedback, [feedback("brand_removal", "l2", "veltrix", T + 1, "alice")],
                      "listing_id")
        judged(s, job, "l2")
        produce_lines(s.bootstrap, s.topics.listings,
                      [listing(100 + i, f"Veltrix drill bit {i}", seller="s-9") for i in range(50)], "listing_id")
        time.sleep(1.5)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()

    # 3. restart after the hard kill: everything decided once, new work still done
    job = start_job(s, "job-3.log")
    try:
        produce_lines(s.bootstrap, s.topics.listings, [listing(3, "Veltrex hammer drill", seller="s-10")],
                      "listing_id")
        wait_for(s, job, lambda d: latest(d, "l3") is not None and all(latest(d, f"l{100 + i}") for i in range(50)),
                 timeout_s=180)
        produce_lines(s.bootstrap, s.topics.feedback, [feedback("brand_removal", "l3", "veltrix", T + 2, "alice")],
                      "listing_id")
        decisions = judged(s, job, "l3")
    finally:
        stop(job)
    flagged = [(d["listing_id"], d["action"]) for d in decisions]
    assert len(flagged) == len(set(flagged)), "a transition was written twice"
    assert "ghost" not in {d["listing_id"] for d in read(s, s.topics.decisions)}

    # 4. the API starts on topics the job wrote, and serves the brand's signals and standing
    port = free_port()
    api = start_api(s, port)
    try:
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while True:
            assert api.poll() is None, (s.state_dir / "api.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.5)
        signals = requests.get(f"{base}/v1/brands/veltrix/signals", headers=auth, timeout=10).json()["signals"]
        open_ids = {d["listing_id"] for d in signals}
        assert {"l1", "l2", "l3"} | {f"l{100 + i}" for i in range(50)} == open_ids
        standing = requests.get(f"{base}/v1/brands/veltrix/standing", headers=auth, timeout=10).json()
        assert standing["removals"]["removal_accepted"] == 3
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
