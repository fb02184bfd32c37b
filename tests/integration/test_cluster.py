"""The scanner on a real standalone Flink cluster: one JobManager and two TaskManagers as
separate JVMs started from the wheel's distribution (`zeroscan cluster up`), the job submitted
with `flink run` (`zeroscan cluster submit`), reading and writing the session broker. Its
decisions, dead letters and feedback ledger must equal file mode's (`zeroscan scan`) on the
same input."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from connectors.job_ops import scrape_all
from connectors.kafka_admin import committed_offsets, end_offsets
from connectors.kafka_io import consume, produce_lines
from tests.conftest import ROOT, SAMPLES, settings_env
from tests.unit.test_cluster_config import monitoring_metric_names

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# Sample event times end at 1767225620000; feedback comes after every listing in both modes.
T_LISTINGS = 1_767_226_000_000
T_FEEDBACK = 1_767_300_000_000
JOB_TIMEOUT_S = 300
PROMETHEUS_PORTS = range(9249, 9261)  # metrics.reporter.prom.port in flink-conf/config.yaml
BEAM_BOOT = "pyflink.fn_execution.beam.beam_boot"
ZEROSCAN_COUNTERS = ("records", "dead_letters", "feedback_events", "memo_hits", "memo_misses")


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
        time.sleep(0.25)
    raise AssertionError(f"job did not commit {targets} within {timeout_s}s")


def read(settings, topic: str) -> list[dict]:
    """A topic's committed records, read to the end it has now (the job is cancelled by then:
    nothing more is written)."""
    return [json.loads(v) for _k, v, _p, _o in consume(settings.bootstrap, topic, stop_at_end=True)]


def cancel_and_wait(cluster, job_id: str, timeout_s: float = 120) -> None:
    """Cancel the job and wait until the cluster reports it cancelled (its tasks are gone, so no
    more output can be committed)."""
    cluster.cancel(job_id)
    deadline = time.monotonic() + timeout_s
    while cluster.rest(f"/jobs/{job_id}")["state"] not in ("CANCELED", "FAILED", "FINISHED"):
        assert time.monotonic() < deadline, f"job {job_id} not cancelled within {timeout_s}s"
        time.sleep(0.2)


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


def python_workers(tm_pid: int) -> list[int]:
    """The Python worker processes a TaskManager started: `python -m ...beam_boot`, which runs
    the Beam SDK harness in-process (under the pyflink-udf-runner.sh shell)."""
    return [p for p in descendants(tm_pid) if BEAM_BOOT in cmdline(p)]


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


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """File mode (`zeroscan scan`) on the input every cluster test uses."""
    got = file_mode(tmp_path_factory.mktemp("file-mode"), generated_listings(), feedback_events())
    assert all(got)
    return got


def submit(settings, cluster, parallelism: int) -> tuple[str, dict[str, str]]:
    env = {**os.environ, **settings_env(settings), "ZEROSCAN_FLINK_REST_PORT": str(cluster.rest_port)}
    sub = subprocess.run([sys.executable, "-m", "zeroscan", "cluster", "submit", "--parallelism", str(parallelism)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
    return sub.stdout.split("submitted job ", 1)[1].split(";", 1)[0], env


def test_cluster_job_matches_file_mode(flink_cluster, kafka_settings, expected):
    s = kafka_settings
    cluster = flink_cluster
    listings, feedback = generated_listings(), feedback_events()
    expected_decisions, expected_dead, expected_ledger = expected

    # Three JVMs, each bound to loopback only (the Prometheus reporter has no bind-address option).
    st = cluster.status()
    assert st.taskmanagers == 2 and set(st.pids) == {"jobmanager", "taskmanager-1", "taskmanager-2"}
    for name, pid in st.pids.items():
        exposed = {(h, p) for h, p in listening_addresses(pid) if h not in ("127.0.0.1", "::1")}
        assert {p for _h, p in exposed} <= set(PROMETHEUS_PORTS), (name, exposed)

    produce_lines(s.bootstrap, s.topics.brands, SAMPLES.joinpath("brands.jsonl").read_bytes().splitlines(),
                  "brand_id")
    produce_lines(s.bootstrap, s.topics.listings, listings, "listing_id")
    job_id, env = submit(s, cluster, parallelism=2)
    try:
        wait_consumed(s, cluster, job_id, [s.topics.listings])
        produce_lines(s.bootstrap, s.topics.feedback, feedback, "listing_id")
        wait_consumed(s, cluster, job_id, [s.topics.listings, s.topics.feedback])

        # The job runs on both TaskManagers, each with Python workers of its own.
        used = {t["taskmanager-id"] for v in cluster.rest(f"/jobs/{job_id}")["vertices"]
                for t in cluster.rest(f"/jobs/{job_id}/vertices/{v['id']}/taskmanagers")["taskmanagers"]}
        assert len(used) == 2, used
        for name in ("taskmanager-1", "taskmanager-2"):
            assert python_workers(st.pids[name]), f"{name} runs no Python worker"

        # Operating it: `zeroscan job status` from Kafka and the REST API.
        status = subprocess.run([sys.executable, "-m", "zeroscan", "job", "status"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"job {job_id}: RUNNING; web UI {cluster.rest_url}" in status.stdout
        assert "consumer lag: 0 records" in status.stdout and "restarts: 0" in status.stdout
        assert "last completed checkpoint: #" in status.stdout

        # Every metric the dashboard and the alerts use is served by the cluster's reporters.
        ports = {p for pid in st.pids.values() for _h, p in listening_addresses(pid)} & set(PROMETHEUS_PORTS)
        scraped = {name for port_metrics in scrape_all(sorted(ports)).values() for name in port_metrics}
        missing = monitoring_metric_names() - scraped
        assert not missing, (missing, sorted(n for n in scraped if "zeroscan" in n or "ending" in n
                                             or "heckpoint" in n or "estart" in n))
        assert {f"flink_taskmanager_job_task_operator_zeroscan_{m}" for m in ZEROSCAN_COUNTERS} <= scraped
    finally:
        cancel_and_wait(cluster, job_id)
    # The cluster owns the state: checkpoints where its configuration says, none in the client's folder.
    assert list((cluster.home / "checkpoints" / job_id).glob("chk-*"))
    assert not (s.state_dir / "checkpoints").exists()

    assert by_listing(read(s, s.topics.decisions)) == by_listing(expected_decisions)
    assert dead_keys(read(s, s.topics.dead_letter)) == dead_keys(expected_dead)
    assert ledger_keys(read(s, s.topics.ledger)) == ledger_keys(expected_ledger)


# One more than the old restart strategy allowed for the job's whole life (fixed-delay, 3 attempts).
KILLS = 4


def restarts(cluster, job_id: str) -> int:
    m = cluster.rest(f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(float(m[0]["value"])) if m else 0


def job_workers(cluster, job_id: str, pids: dict[str, int]) -> list[int]:
    """The Python SDK harness processes serving the job (on whichever TaskManager runs it)."""
    return [p for name, pid in pids.items() if name.startswith("taskmanager") for p in python_workers(pid)]


@pytest.mark.faults
def test_cluster_job_survives_more_python_worker_kills_than_the_old_limit(flink_cluster, kafka_settings, expected):
    """kill -9 of the job's Python worker, KILLS times at random moments, each followed by a wave of listings:
    the job restarts every time (exponential-delay, no attempt limit) and its output still
    equals file mode's: nothing lost, nothing written twice. Parallelism 1: the per-worker
    listing context store is exact only with one worker (see README)."""
    s, cluster = kafka_settings, flink_cluster
    rng = random.Random(15)
    listings, feedback = generated_listings(), feedback_events()
    # A listing's updates must keep their order: waves split by listing, not by line.
    by_id = defaultdict(list)
    for line in listings:
        try:
            by_id[json.loads(line).get("listing_id")].append(line)
        except ValueError:
            by_id[None].append(line)
    ids = list(by_id)
    waves = [[line for lid in ids[i::KILLS + 1] for line in by_id[lid]] for i in range(KILLS + 1)]
    produce_lines(s.bootstrap, s.topics.brands, SAMPLES.joinpath("brands.jsonl").read_bytes().splitlines(),
                  "brand_id")
    produce_lines(s.bootstrap, s.topics.listings, waves[0], "listing_id")
    job_id, _env = submit(s, cluster, parallelism=1)
    pids = cluster.status().pids
    recovery = []
    try:
        wait_consumed(s, cluster, job_id, [s.topics.listings])
        for k in range(KILLS):
            # A dead worker is noticed when the next records reach it: kill, then send a wave.
            time.sleep(rng.uniform(0.0, 2.0))
            workers = job_workers(cluster, job_id, pids)
            assert workers, "no Python worker to kill"
            os.kill(rng.choice(workers), signal.SIGKILL)
            t0 = time.monotonic()
            produce_lines(s.bootstrap, s.topics.listings, waves[k + 1], "listing_id")
            deadline = t0 + JOB_TIMEOUT_S
            while restarts(cluster, job_id) < k + 1:
                assert time.monotonic() < deadline, f"kill {k + 1}: the job did not restart"
                time.sleep(0.5)
            wait_consumed(s, cluster, job_id, [s.topics.listings])
            recovery.append(time.monotonic() - t0)
        produce_lines(s.bootstrap, s.topics.feedback, feedback, "listing_id")
        wait_consumed(s, cluster, job_id, [s.topics.listings, s.topics.feedback])
        assert cluster.rest(f"/jobs/{job_id}")["state"] == "RUNNING"
        assert restarts(cluster, job_id) >= KILLS
    finally:
        cancel_and_wait(cluster, job_id)
    print(f"recovery after each kill -9 of the Python worker: {[round(r, 1) for r in recovery]} s")
    expected_decisions, expected_dead, expected_ledger = expected
    assert by_listing(read(s, s.topics.decisions)) == by_listing(expected_decisions)
    assert dead_keys(read(s, s.topics.dead_letter)) == dead_keys(expected_dead)
    assert ledger_keys(read(s, s.topics.ledger)) == ledger_keys(expected_ledger)
