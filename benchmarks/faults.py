"""Faults injected under load (`make bench-faults`), modelled on Kafka's transactions system test
and Flink's TaskManager-failure tests. On a standalone cluster (JobManager + two TaskManagers,
the `zeroscan cluster` one) and a dev broker it starts itself:

1. a fault-free run: the seeded benchmark mix (benchmarks/traffic.py, >= 100,000 listing
   updates, ~1 % malformed) plus brand removals, on its own topics;
2. the same input again, produced at a steady rate, while kill -9 of the TaskManager that runs
   the job, kill -9 of its Python worker and a hard restart (kill -9, start) of the broker each
   happen --each times at random moments;

then compares the two: decisions per listing (lost, written twice), dead letters and ledger
events. Writes benchmarks/results/faults.json.

Removals are produced only once the job has committed the first half of the listings, and name
listings that the second half does not touch, so their outcome does not depend on timing."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from benchmarks.traffic import SEED, Mix, Traffic, brand_records
from connectors.flink_cluster import FlinkCluster
from connectors.kafka_admin import committed_offsets, contract_topics, end_offsets, ensure_topics
from connectors.kafka_broker import KafkaBroker, free_port_pair
from connectors.kafka_io import consume, produce_lines
from zeroscan.settings import ROOT, Settings, Topics

RESULTS = ROOT / "benchmarks" / "results" / "faults.json"
KINDS = ("taskmanager_kill9", "python_worker_kill9", "broker_restart")
# Share of malformed records, as in the light-load runs (2 %), half broken JSON, half
# contract violations.
MALFORMED = 0.01
# No fault before the job has run this long, and none closer than this to the previous recovery:
# each fault hits a job that is processing, not one still restarting.
FIRST_FAULT_S = 20.0
MIN_GAP_S = 8.0
RECOVERY_TIMEOUT_S = 300.0
# Listing updates are spread over this much time per fault: every fault, a Python worker's kill
# included, must hit a job that still receives records (a killed idle worker is only noticed
# when records reach it; recoveries took 15-105 s at 45 s per fault, and the last faults came
# after the last record).
SLOT_S = 60.0
# The bench cluster notices a killed TaskManager within ~10 s (Flink's default heartbeat
# timeout, 50 s, made a TaskManager kill cost 70-105 s).
HEARTBEAT = {"heartbeat.interval": "2000", "heartbeat.timeout": "10000"}
JOB_PACKAGES = ("brand_signals", "connectors", "pipelines", "models", "zeroscan")


def make_input(n: int, marks: int, removals: int, seed: int = SEED) -> tuple[list[dict], list[bytes], list[bytes]]:
    """Brands, listing updates (with malformed ones) and brand removals."""
    brands = brand_records(marks, seed)
    traffic = Traffic(brands, Mix(), seed)
    traffic.warm(max(1000, n // 10))
    rng = random.Random(seed + 1)
    lines = []
    for i, line in enumerate(traffic.lines(n)):
        r = rng.random()
        if r < MALFORMED / 2:
            lines.append(b"not json " + str(i).encode())
        elif r < MALFORMED:
            rec = orjson.loads(line)
            rec["price"] = {"amount": -1, "currency": "USD"}
            lines.append(orjson.dumps(rec))
        else:
            lines.append(line)
    half = len(lines) // 2
    first, second = set(), set()
    for idx, line in enumerate(lines):
        try:
            lid = orjson.loads(line).get("listing_id")
        except orjson.JSONDecodeError:
            continue
        (first if idx < half else second).add(lid)
    targets = sorted(first - second)
    rng.shuffle(targets)
    brand_ids = [b["brand_id"] for b in brands]
    feedback = [orjson.dumps({"kind": "brand_removal", "listing_id": lid, "brand_id": rng.choice(brand_ids),
                              "event_time": 1_800_000_000_000 + i, "actor": "owner"})
                for i, lid in enumerate(targets[:removals])]
    return brands, lines, feedback


class Run:
    """One job on its own topics, group and transactional ids."""

    def __init__(self, base: Settings, cluster: FlinkCluster, name: str, work: Path):
        tag = uuid.uuid4().hex[:6]
        self.name = name
        self.settings = dataclasses.replace(
            base, state_dir=work / name, consumer_group=f"faults-{name}-{tag}",
            transactional_id_prefix=f"faults-{name}-{tag}", topics=Topics.prefixed(f"f{tag}-"))
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        ensure_topics(base.bootstrap, contract_topics(self.settings.topics, partitions=4))
        self.job_id: str | None = None

    def submit(self) -> None:
        s = self.settings
        env = {"ZEROSCAN_BOOTSTRAP": s.bootstrap, "ZEROSCAN_STATE_DIR": str(s.state_dir),
               "ZEROSCAN_GROUP": s.consumer_group, "ZEROSCAN_TXN_PREFIX": s.transactional_id_prefix,
               "ZEROSCAN_TOPIC_PREFIX": s.topics.listings[: -len("listings")], "ZEROSCAN_IMAGES": "off",
               "PYTHONPATH": str(ROOT)}
        self.job_id = self.cluster.submit_python(
            ROOT / "pipelines" / "scanner_job.py", python=sys.executable, pyfiles=[ROOT / p for p in JOB_PACKAGES],
            job_args=["--", "--parallelism", "1"], env=env)

    def committed(self, topic: str) -> dict[int, int]:
        return committed_offsets(self.settings.bootstrap, self.settings.consumer_group, topic)

    def caught_up(self, targets: dict[str, dict[int, int]]) -> bool:
        try:
            return all(all(self.committed(t).get(p, 0) >= o for p, o in tgt.items()) for t, tgt in targets.items())
        except Exception:  # noqa: BLE001 - the broker may be restarting; keep polling
            return False

    def ends(self) -> dict[str, dict[int, int]]:
        t = self.settings.topics
        return {t.listings: end_offsets(self.settings.bootstrap, t.listings),
                t.feedback: end_offsets(self.settings.bootstrap, t.feedback)}

    def restarts(self) -> int:
        try:
            m = self.cluster.rest(f"/jobs/{self.job_id}/metrics?get=numRestarts")
            return int(float(m[0]["value"])) if m else 0
        except (OSError, ValueError):
            return -1

    def state(self) -> str:
        try:
            return self.cluster.rest(f"/jobs/{self.job_id}")["state"]
        except (OSError, ValueError):
            return "UNKNOWN"

    def state_size(self, listings: int) -> dict:
        """The job's keyed state at its latest completed checkpoint (the full size, incremental
        checkpoints or not), in all and per distinct listing."""
        try:
            latest = self.cluster.rest(f"/jobs/{self.job_id}/checkpoints")["latest"]["completed"]
            full = int(latest["state_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {"checkpoint_id": latest.get("id"), "full_bytes": full, "distinct_listings": listings,
                "bytes_per_listing": round(full / max(1, listings))}

    def read(self, topic: str) -> list[dict]:
        return [json.loads(v) for _k, v, _p, _o in consume(self.settings.bootstrap, topic, idle_timeout_s=5)]


def listing_id(line: bytes) -> str | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj.get("listing_id") if isinstance(obj, dict) else None


def produce(run: Run, brands: list[dict], lines: list[bytes], feedback: list[bytes], rate: float | None) -> None:
    """Listings at `rate` per second (None: as fast as possible); removals once the first half
    is committed by the job."""
    s = run.settings
    produce_lines(s.bootstrap, s.topics.brands, (orjson.dumps(b) for b in brands), "brand_id")
    half = len(lines) // 2
    t0 = time.monotonic()

    def paced(chunk: list[bytes], offset: int):
        for i, line in enumerate(chunk):
            if rate is not None and i % 100 == 0:
                delay = t0 + (offset + i) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield line

    produce_lines(s.bootstrap, s.topics.listings, paced(lines[:half], 0), "listing_id")
    first_half = {s.topics.listings: end_offsets(s.bootstrap, s.topics.listings)}

    def removals() -> None:
        deadline = time.monotonic() + 4 * RECOVERY_TIMEOUT_S
        while not run.caught_up(first_half) and time.monotonic() < deadline:
            time.sleep(1)
        produce_lines(s.bootstrap, s.topics.feedback, feedback, "listing_id")

    fb = threading.Thread(target=removals, daemon=True)
    fb.start()
    produce_lines(s.bootstrap, s.topics.listings, paced(lines[half:], half), "listing_id")
    fb.join()


def wait_done(run: Run, n_feedback: int, timeout_s: float) -> float:
    s = run.settings
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ends = run.ends()
            if sum(ends[s.topics.feedback].values()) >= n_feedback and run.caught_up(ends):
                return time.monotonic()
        except Exception:  # noqa: BLE001 - the broker may be restarting
            pass
        time.sleep(1)
    raise RuntimeError(f"{run.name}: the job did not catch up within {timeout_s}s (state {run.state()})")


def job_taskmanager(cluster: FlinkCluster) -> str | None:
    """The TaskManager whose Python workers run the (single) job."""
    for name, pid in cluster.pids().items():
        if name.startswith("taskmanager") and python_workers(pid):
            return name
    return None


def python_workers(tm_pid: int) -> list[int]:
    children = defaultdict(list)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children[ppid].append(int(p.name))
    found, todo = [], [tm_pid]
    while todo:
        for c in children.get(todo.pop(), []):
            todo.append(c)
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes()
            except OSError:
                continue
            if b"pyflink.fn_execution.beam.beam_boot" in cmd:  # runs the SDK harness in-process
                found.append(c)
    return found


def inject(kind: str, run: Run, cluster: FlinkCluster, broker: KafkaBroker, rng: random.Random) -> str:
    if kind == "taskmanager_kill9":
        name = job_taskmanager(cluster) or "taskmanager-1"
        os.kill(cluster.pids()[name], signal.SIGKILL)
        time.sleep(2)
        cluster.start_taskmanager(name)  # capacity comes back, as a supervisor would restart it
        return name
    if kind == "python_worker_kill9":
        name = job_taskmanager(cluster)
        workers = python_workers(cluster.pids()[name]) if name else []
        if not workers:
            raise RuntimeError("no Python worker to kill")
        victim = rng.choice(workers)
        os.kill(victim, signal.SIGKILL)
        return f"pid {victim} on {name}"
    if kind == "broker_restart":
        pid = broker.kill()
        broker.up()
        return f"broker pid {pid}"
    raise ValueError(f"unknown fault kind {kind!r}")


def compare(ref: Run, got: Run) -> dict:
    def per_listing(run: Run) -> dict[str, Counter]:
        out: dict[str, Counter] = defaultdict(Counter)
        for d in run.read(run.settings.topics.decisions):
            out[d["listing_id"]][(d["action"], d["brand_id"], d["score"])] += 1
        return out

    a, b = per_listing(ref), per_listing(got)
    lost = sum(sum((a[k] - b.get(k, Counter())).values()) for k in a)
    dup = sum(sum((b[k] - a.get(k, Counter())).values()) for k in b)
    dead = lambda r: Counter((d.get("listing_id") or "", d["reason"], d["record_sha256"])  # noqa: E731
                             for d in r.read(r.settings.topics.dead_letter))
    ledger = lambda r: Counter((e["listing_id"], e["kind"], e["brand_id"])  # noqa: E731
                               for e in r.read(r.settings.topics.ledger))
    dref, dgot, lref, lgot = dead(ref), dead(got), ledger(ref), ledger(got)
    return {"decisions_reference": sum(sum(c.values()) for c in a.values()),
            "decisions_seen": sum(sum(c.values()) for c in b.values()),
            "lost_decisions": lost, "duplicate_decisions": dup,
            "dead_letters_reference": sum(dref.values()), "dead_letters_seen": sum(dgot.values()),
            "dead_letters_equal": dref == dgot,
            "ledger_events_reference": sum(lref.values()), "ledger_events_seen": sum(lgot.values()),
            "ledger_equal": lref == lgot}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listings", type=int, default=100_000)
    ap.add_argument("--removals", type=int, default=1_000)
    ap.add_argument("--marks", type=int, default=1_000)
    ap.add_argument("--each", type=int, default=3, help="faults of each kind")
    ap.add_argument("--rate", type=float, default=None, help="listing updates/s in the fault run "
                    "(default: spread over the time the faults need)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    base = Settings.from_env()
    work = base.state_dir / "bench-faults"
    shutil.rmtree(work, ignore_errors=True)
    port = free_port_pair()
    broker = KafkaBroker(work, base.jar_dir / "kafka-broker", port=port)
    rest = free_port_pair()
    cluster = FlinkCluster(work / "flink-cluster", base.flink_conf_dir, rest_port=rest, rpc_port=rest + 1, dynamic={
        **HEARTBEAT,
        "execution.checkpointing.dir": (work / "flink-cluster" / "checkpoints").as_uri(),
        "execution.checkpointing.savepoint-dir": (work / "flink-cluster" / "savepoints").as_uri()})
    brands, lines, feedback = make_input(args.listings, args.marks, args.removals)
    dead_expected = sum(1 for x in lines if x.startswith(b"not json") or b'"amount":-1' in x)
    faults = [k for k in KINDS for _ in range(args.each)]
    rng.shuffle(faults)
    out: dict = {"command": "make bench-faults (python -m benchmarks.faults " + " ".join(argv or sys.argv[1:]) + ")",
                 "listings": len(lines), "feedback_events": len(feedback), "marks": args.marks, "seed": args.seed,
                 "machine": {"cpus": os.cpu_count()}, "checkpoint_interval": "2 s", "parallelism": 1}
    try:
        broker.up()
        base = dataclasses.replace(base, bootstrap=broker.bootstrap)
        cluster.up()
        print(f"broker {broker.bootstrap}, cluster {cluster.rest_url}; {len(lines)} updates, "
              f"{len(feedback)} removals, faults {faults}", flush=True)

        ref = Run(base, cluster, "reference", work)
        ref.submit()
        t0 = time.monotonic()
        produce(ref, brands, lines, feedback, rate=None)
        done = wait_done(ref, len(feedback), 4 * RECOVERY_TIMEOUT_S)
        out["reference_s"] = round(done - t0, 1)
        out["reference_listings_per_s"] = round(len(lines) / (done - t0))
        out["reference_state"] = ref.state_size(len({listing_id(x) for x in lines} - {None}))
        cluster.cancel(ref.job_id)
        while ref.state() not in ("CANCELED", "FAILED", "FINISHED"):
            time.sleep(0.5)
        print(f"fault-free run: {out['reference_s']} s ({out['reference_listings_per_s']}/s)", flush=True)

        run = Run(base, cluster, "faults", work)
        run.submit()
        budget_s = FIRST_FAULT_S + len(faults) * SLOT_S
        rate = args.rate or max(200.0, len(lines) / budget_s)
        out["fault_run_rate_per_s"] = round(rate)
        producer = threading.Thread(target=produce, args=(run, brands, lines, feedback, rate), daemon=True)
        t_start = time.monotonic()
        producer.start()
        while not run.caught_up({run.settings.topics.listings: {0: 1}}) and time.monotonic() - t_start < 300:
            time.sleep(1)  # the job is up and committing
        produce_window = len(lines) / rate
        slots = [FIRST_FAULT_S + (produce_window - FIRST_FAULT_S) * i / len(faults) for i in range(len(faults) + 1)]
        records = []
        for i, kind in enumerate(faults):
            at = t_start + rng.uniform(slots[i], slots[i + 1] - MIN_GAP_S)
            time.sleep(max(0.0, at - time.monotonic()))
            before = run.restarts()
            targets = run.ends()
            t_fault = time.monotonic()
            what = inject(kind, run, cluster, broker, rng)
            while True:
                if time.monotonic() - t_fault > RECOVERY_TIMEOUT_S:
                    raise RuntimeError(f"fault {i + 1} ({kind}, {what}): no recovery in {RECOVERY_TIMEOUT_S}s")
                restarted = kind == "broker_restart" or run.restarts() > before
                if restarted and run.state() == "RUNNING" and run.caught_up(targets):
                    break
                time.sleep(0.5)
            rec = {"kind": kind, "target": what, "at_s": round(t_fault - t_start, 1),
                   "recovery_s": round(time.monotonic() - t_fault, 1), "restarts_after": run.restarts()}
            records.append(rec)
            print(f"fault {i + 1}/{len(faults)}: {rec}", flush=True)
        producer.join()
        done = wait_done(run, len(feedback), 4 * RECOVERY_TIMEOUT_S)
        out["fault_run_s"] = round(done - t_start, 1)
        out["fault_run_produce_s"] = round(produce_window, 1)
        out["fault_run_drain_after_produce_s"] = round(done - t_start - produce_window, 1)
        out["faults_injected"] = dict(Counter(r["kind"] for r in records))
        out["faults"] = records
        out["recovery_s"] = [r["recovery_s"] for r in records]
        out["restarts"] = run.restarts()
        out["job_state_after"] = run.state()
        cluster.cancel(run.job_id)
        out.update(compare(ref, run))
        out["dead_letters_expected"] = dead_expected
        out["output_equal"] = (out["lost_decisions"] == 0 and out["duplicate_decisions"] == 0
                               and out["dead_letters_equal"] and out["ledger_equal"])
    finally:
        cluster.down()
        broker.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "faults"}, indent=2))
    return 0 if out["output_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
