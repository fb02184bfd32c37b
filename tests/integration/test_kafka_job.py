"""The streaming job on a real Kafka broker: listings in, decisions and dead letters out,
exactly once, also across a hard kill of the job and a restart from its checkpoint; a stop
whose savepoint cannot complete in time cancels the job and keeps its checkpoint."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from connectors.kafka_admin import committed_offsets, end_offsets
from connectors.kafka_io import consume, produce_lines
from pipelines.scanner_job import latest_restore_point
from tests.conftest import ROOT, settings_env
from tests.unit.test_record_schemas import STATUS, STATUS_KEY, check_decision

pytestmark = pytest.mark.integration

BRANDS = [
    {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "authorized_sellers": ["vx-store"],
     "enforcement": "takedown", "version": 1},
    {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1},
]
JOB_START_TIMEOUT_S = 240
# A listing record with bytes that are not UTF-8 in its title (a dead letter).
NOT_UTF8 = b'{"listing_id":"l7","seller_id":"s-7","event_time":7,"title":"Veltrix \xff\xfe drill"}'
# How often the tests ask Kafka whether the job committed: output becomes visible when a
# checkpoint completes (every 2 s), so a 1 s poll added half a second to every wait on average.
POLL_S = 0.25
# How long a SIGTERM'd job may take to end: its savepoint wait (60 s by default), a cancel and
# its exit deadline after that (zeroscan/cli.py) are all within it.
STOP_WAIT_S = 150


def listing(i: int, title: str, seller: str = "s-1", **kw) -> bytes:
    return json.dumps({"listing_id": f"l{i}", "seller_id": seller, "event_time": 1_700_000_000_000 + i,
                       "title": title, **kw}).encode()


def start_job(settings, log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / log_name, "wb") as log:
        job = subprocess.Popen([sys.executable, "-m", "zeroscan", "job", "run"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, **settings_env(settings), **(env or {})},
                               start_new_session=True)
    job.log_path = settings.state_dir / log_name
    return job


def wait_committed(settings, job: subprocess.Popen, timeout_s: float = JOB_START_TIMEOUT_S) -> None:
    target = end_offsets(settings.bootstrap, settings.topics.listings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert job.poll() is None, (settings.state_dir / "job.log").read_text()[-3000:]
        done = committed_offsets(settings.bootstrap, settings.consumer_group, settings.topics.listings)
        if all(done.get(p, 0) >= o for p, o in target.items()):
            return
        time.sleep(POLL_S)
    raise AssertionError(f"job did not commit {target} within {timeout_s}s")


def read(settings, topic: str) -> list[dict]:
    return [json.loads(v) for _k, v, _p, _o in consume(settings.bootstrap, topic, stop_at_end=True)]


def stop(job: subprocess.Popen, timeout_s: float = STOP_WAIT_S) -> str:
    """SIGTERM; the job must end by itself within `timeout_s`, with status 0. Returns its log. A
    job that does not end is killed with its process group, and the failure shows its log's end
    (where a job stuck while stopping writes its threads' stacks: `job run`'s exit deadline)."""
    if job.poll() is not None:      # it ended before: the caller checks how
        return job.log_path.read_text()
    if not end(job, timeout_s):
        raise AssertionError(f"job did not end within {timeout_s}s of SIGTERM: ...{job.log_path.read_text()[-6000:]}")
    text = job.log_path.read_text()
    assert job.returncode == 0, text[-6000:]
    return text


@contextlib.contextmanager
def silent_http_server():
    """An HTTP server on loopback that reads each request and never answers it (until the block
    ends): yields its url and an Event set once a request came."""
    asked, done = threading.Event(), threading.Event()
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    conns = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            conn.settimeout(5)
            got = b""
            try:
                while b"\r\n\r\n" not in got:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except OSError:
                continue
            if b"\r\n\r\n" in got:
                asked.set()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/photo.jpg", asked
    finally:
        done.set()
        t.join(5)
        for c in conns:
            c.close()
        srv.close()


def end(proc: subprocess.Popen, timeout_s: float = 30) -> bool:
    """SIGTERM a process and reap it; SIGKILL its process group if it does not end within
    `timeout_s`. Whether it ended by itself."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


def test_listings_to_decisions_and_dead_letters_exactly_once_across_a_crash(kafka_settings):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(b).encode() for b in BRANDS], "brand_id")
    first = [
        listing(1, "Veltrix cordless drill 18V"),                  # flagged: takedown
        listing(2, "Veltrix cordless drill 18V", seller="vx-store"),  # authorized
        listing(3, "Lumora night cream 50ml"),                     # flagged: review
        listing(4, "Plain steel hammer"),                          # clean
        b"not json at all",
        json.dumps({"listing_id": "l6", "seller_id": "s", "event_time": 1, "title": "x",
                    "price": {"amount": -1, "currency": "USD"}}).encode(),
        NOT_UTF8,
    ]
    produce_lines(s.bootstrap, s.topics.listings, first, "listing_id")
    job = start_job(s, "job.log")
    try:
        wait_committed(s, job)
        decisions = read(s, s.topics.decisions)
        assert sorted((d["listing_id"], d["brand_id"], d["action"]) for d in decisions) == [
            ("l1", "veltrix", "takedown"), ("l3", "lumora", "review")]
        # each names the listing update it was made from: its event time, topic, partition, offset
        sources = {d["listing_id"]: d["source"] for d in decisions}
        assert {d["listing_id"]: d["event_time"] for d in decisions} == {"l1": 1_700_000_000_001,
                                                                         "l3": 1_700_000_000_003}
        assert {src["topic"] for src in sources.values()} == {s.topics.listings}
        assert all(isinstance(src["partition"], int) and isinstance(src["offset"], int) for src in sources.values())
        dead = read(s, s.topics.dead_letter)
        assert len(dead) == 3
        assert {d["origin"]["topic"] for d in dead} == {s.topics.listings}
        assert all(isinstance(d["origin"]["offset"], int) for d in dead)
        assert any("price.amount" in d["reason"] for d in dead)
        # the job reads records as text; a record that is not UTF-8 reaches the scan as the
        # bytes that were produced, and its dead letter holds them
        [bad] = [d for d in dead if "record_base64" in d]
        assert "not valid UTF-8" in bad["reason"]
        assert base64.b64decode(bad["record_base64"]) == NOT_UTF8
        assert bad["record_sha256"] == hashlib.sha256(NOT_UTF8).hexdigest()

        # A second wave while the job runs, then a hard crash (no savepoint) before or after
        # it is committed: the restarted job must neither lose nor repeat output.
        second = [listing(100 + i, f"Veltrix drill bits set {i}") for i in range(200)]
        second += [listing(3, "Lumora night cream 50ml")]            # unchanged repost: no new decision
        second += [json.dumps({"listing_id": "l1", "seller_id": "s-1", "event_time": 9,
                               "op": "delete"}).encode()]            # retracts l1
        produce_lines(s.bootstrap, s.topics.listings, second, "listing_id")
        time.sleep(3)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()

    # The restarted job's stop is bounded: a listing whose image server never answers holds the
    # scan, and the savepoint's barrier behind it, for the fetch budgets (raised to 60 s here);
    # the job waits 1 s for the savepoint (ZEROSCAN_STOP_TIMEOUT_S) and then cancels, keeping its
    # last checkpoint for the next run.
    slow = {"ZEROSCAN_STOP_TIMEOUT_S": "1", "ZEROSCAN_EGRESS_ALLOW": "127.0.0.1/32",
            "ZEROSCAN_FETCH": "total_s=60;read_s=60;listing_s=60;batch_s=60"}
    with silent_http_server() as (url, asked):
        job = start_job(s, "job-restarted.log", env=slow)
        try:
            wait_committed(s, job)
            produce_lines(s.bootstrap, s.topics.listings, [listing(400, "Plain garden hose", images=[{"uri": url}])],
                          "listing_id")
            assert asked.wait(120), "the job did not fetch the listing's image"
        finally:
            t0 = time.monotonic()
            said = stop(job)
            stopped_s = time.monotonic() - t0
    assert "scanner job stopped without a savepoint: the savepoint was not done within 1 s; cancelled" in said, \
        said[-3000:]
    assert stopped_s < 30, stopped_s      # the image's fetch would have held it 60 s
    assert "/chk-" in (latest_restore_point(s) or ""), latest_restore_point(s)
    decisions = read(s, s.topics.decisions)
    per_listing = Counter((d["listing_id"], d["action"]) for d in decisions)
    assert max(per_listing.values()) == 1, [k for k, n in per_listing.items() if n > 1]
    assert {f"l{100 + i}" for i in range(200)} <= {d["listing_id"] for d in decisions}
    assert per_listing[("l1", "clear")] == 1 and per_listing[("l3", "review")] == 1
    assert len(read(s, s.topics.dead_letter)) == 3
    # listing-status: the latest decision per listing and brand, written once per change like
    # decisions (same transactions), and l1's clear kept as a record
    status = [(json.loads(k), json.loads(v)) for k, v, _p, _o in consume(s.bootstrap, s.topics.status,
                                                                          stop_at_end=True)]
    assert len(status) == len(decisions)
    for d in decisions:
        check_decision(d)
    for k, v in status:
        STATUS_KEY.validate(k)
        STATUS.validate(v)
    latest = {tuple(k): v for k, v in status}
    assert all(list(k) == [v["listing_id"], v["brand_id"]] for k, v in latest.items())
    assert latest["l1", "veltrix"]["action"] == "clear" and latest["l1", "veltrix"]["event_time"] == 9
    assert latest["l3", "lumora"]["action"] == "review"
