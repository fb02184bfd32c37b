"""The scanner on a real standalone Flink cluster: one JobManager and two TaskManagers as
separate JVMs started from the wheel's distribution (`zeroscan cluster up`), the job submitted
with `flink run` (`zeroscan cluster submit`), reading and writing the session broker. Its
decisions, dead letters and feedback ledger must equal file mode's (`zeroscan scan`) on the
same input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from connectors.kafka_admin import committed_offsets, end_offsets
from connectors.kafka_io import consume, produce_lines
from tests.conftest import ROOT, SAMPLES, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# Sample event times end at 1767225620000; feedback comes after every listing in both modes.
T_LISTINGS = 1_767_226_000_000
T_FEEDBACK = 1_767_300_000_000
JOB_TIMEOUT_S = 300
PROMETHEUS_PORTS = range(9249, 9261)  # metrics.reporter.prom.port in flink-conf/config.yaml


def generated_listings() -> list[bytes]:
    """The sample plus a few dozen listings per brand, some re-posted, some deleted."""
    rows = SAMPLES.joinpath("listings.jsonl").read_bytes().splitlines()
    titles = ["Acme Audio X9 earbuds {i}", "Lumora rose face cream {i}", "Kestrel hiking tent {i}",
              "Veltrix impact driver {i}", "Plain ceramic mug {i}", "Lumоra serum {i}"]
    for i in range(48):
        rows.append(json.dumps({"listing_id": f"gen-{i}", "seller_id": f"s-{i % 7}", "event_time": T_LISTINGS + i,
                                "title": titles[i % len(titles)].format(i=i)}).encode())
    for i in range(0, 48, 8):  # unchanged re-posts: no new decision
        rows.append(json.dumps({"listing_id": f"gen-{i}", "seller_id": f"s-{i % 7}", "event_time": T_LISTINGS + 100 + i,
                                "title": titles[i % len(titles)].format(i=i)}).encode())
    for i in (2, 14):  # deletes of flagged listings: clear
        rows.append(json.dumps({"listing_id": f"gen-{i}", "seller_id": f"s-{i % 7}",
                                "event_time": T_LISTINGS + 200 + i, "op": "delete"}).encode())
    return rows


def feedback_events() -> list[bytes]:
    def ev(i, kind, lid, brand, actor):
        return json.dumps({"kind": kind, "listing_id": lid, "brand_id": brand, "event_time": T_FEEDBACK + i,
                           "actor": actor}).encode()
    return [
        ev(1, "brand_removal", "gen-1", "lumora", "lumora-owner"),      # flagged for review: accepted
        ev(2, "brand_removal", "gen-4", "lumora", "lumora-owner"),      # presents no brand: refused
        ev(3, "brand_removal", "gen-3", "lumora", "lumora-owner"),      # presents another brand: refused
        ev(4, "brand_removal", "never-seen", "kestrel", "kestrel-owner"),
        ev(5, "appeal_upheld", "gen-1", "lumora", "reviewer-1"),        # the removal is undone
        ev(6, "brand_removal", "gen-7", "lumora", "lumora-owner"),
    ]


def by_listing(decisions: list[dict]) -> dict[str, list[tuple]]:
    out = defaultdict(list)
    for d in decisions:
        out[d["listing_id"]].append((d["action"], d["brand_id"], d["score"], tuple(s["kind"] for s in d["signals"])))
    return dict(out)


def dead_keys(dead: list[dict]) -> list[tuple]:
    return sorted((d.get("listing_id") or "", d["reason"], d["record_sha256"]) for d in dead)


def ledger_keys(ledger: list[dict]) -> list[tuple]:
    return sorted((e["listing_id"], e["kind"], e["brand_id"], e.get("brand_status") or "") for e in ledger)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def file_mode(tmp: Path, listings: list[bytes], feedback: list[bytes]) -> tuple[list[dict], list[dict], list[dict]]:
    (tmp / "listings.jsonl").write_bytes(b"\n".join(listings) + b"\n")
    (tmp / "feedback.jsonl").write_bytes(b"\n".join(feedback) + b"\n")
    out = tmp / "decisions.jsonl"
    subprocess.run([sys.executable, "-m", "zeroscan", "scan", "--brands", str(SAMPLES / "brands.jsonl"),
                    "--listings", str(tmp / "listings.jsonl"), "--feedback", str(tmp / "feedback.jsonl"),
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=JOB_TIMEOUT_S,
                   env={**os.environ, "ZEROSCAN_STATE_DIR": str(tmp / "file-state")})
    return jsonl(out), jsonl(tmp / "decisions.dead-letter.jsonl"), jsonl(tmp / "decisions.ledger.jsonl")


def wait_consumed(settings, cluster, job_id: str, topics: list[str], timeout_s: float = JOB_TIMEOUT_S) -> None:
    """Until the job's group committed every partition's end offset (a checkpoint completed
    after the job read them), failing early if the job stops running."""
    targets = {t: end_offsets(settings.bootstrap, t) for t in topics}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = cluster.rest(f"/jobs/{job_id}")["state"]
        assert state in ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING"), f"job {job_id} is {state}"
        if all(all(committed_offsets(settings.bootstrap, settings.consumer_group, t).get(p, 0) >= o
                   for p, o in target.items()) for t, target in targets.items()):
            return
        time.sleep(1)
    raise AssertionError(f"job did not commit {targets} within {timeout_s}s")


def read(settings, topic: str) -> list[dict]:
    return [json.loads(v) for _k, v, _p, _o in consume(settings.bootstrap, topic, idle_timeout_s=3)]


def descendants(pid: int) -> list[int]:
    children = defaultdict(list)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children[ppid].append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            addr, port = f[1].split(":")
            raw = bytes.fromhex(addr)
            if v6:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                b = b"".join(words)
                host = ("127.0.0.1" if b[:12] == b"\0" * 10 + b"\xff\xff" and b[12:] == b"\x7f\0\0\x01"
                        else "::1" if b == b"\0" * 15 + b"\x01" else "::" if b == b"\0" * 16
                        else b[12:16].hex() if b[:12] == b"\0" * 10 + b"\xff\xff" else b.hex())
            else:
                host = ".".join(str(x) for x in raw[::-1])
            found.add((host, int(port, 16)))
    return found


def test_cluster_job_matches_file_mode(flink_cluster, kafka_settings, tmp_path):
    s = kafka_settings
    cluster = flink_cluster
    listings, feedback = generated_listings(), feedback_events()
    expected_decisions, expected_dead, expected_ledger = file_mode(tmp_path, listings, feedback)
    assert expected_decisions and expected_dead and expected_ledger

    # Three JVMs, each bound to loopback only (the Prometheus reporter has no bind-address option).
    st = cluster.status()
    assert st.taskmanagers == 2 and set(st.pids) == {"jobmanager", "taskmanager-1", "taskmanager-2"}
    for name, pid in st.pids.items():
        exposed = {(h, p) for h, p in listening_addresses(pid) if h not in ("127.0.0.1", "::1")}
        assert {p for _h, p in exposed} <= set(PROMETHEUS_PORTS), (name, exposed)

    produce_lines(s.bootstrap, s.topics.brands, SAMPLES.joinpath("brands.jsonl").read_bytes().splitlines(),
                  "brand_id")
    produce_lines(s.bootstrap, s.topics.listings, listings, "listing_id")
    env = {**os.environ, **settings_env(s), "ZEROSCAN_FLINK_REST_PORT": str(cluster.rest_port)}
    sub = subprocess.run([sys.executable, "-m", "zeroscan", "cluster", "submit", "--parallelism", "2"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
    job_id = sub.stdout.split("submitted job ", 1)[1].split(";", 1)[0]
    try:
        wait_consumed(s, cluster, job_id, [s.topics.listings])
        produce_lines(s.bootstrap, s.topics.feedback, feedback, "listing_id")
        wait_consumed(s, cluster, job_id, [s.topics.listings, s.topics.feedback])

        # The job runs on both TaskManagers, each with Python workers of its own.
        used = {t["taskmanager-id"] for v in cluster.rest(f"/jobs/{job_id}")["vertices"]
                for t in cluster.rest(f"/jobs/{job_id}/vertices/{v['id']}/taskmanagers")["taskmanagers"]}
        assert len(used) == 2, used
        for name in ("taskmanager-1", "taskmanager-2"):
            workers = [p for p in descendants(st.pids[name]) if "pyflink" in cmdline(p) or "beam" in cmdline(p)]
            assert workers, f"{name} runs no Python worker"
    finally:
        cluster.cancel(job_id)

    assert by_listing(read(s, s.topics.decisions)) == by_listing(expected_decisions)
    assert dead_keys(read(s, s.topics.dead_letter)) == dead_keys(expected_dead)
    assert ledger_keys(read(s, s.topics.ledger)) == ledger_keys(expected_ledger)
