"""`make run`: start the broker, load the shipped sample (brands, listings with disguises,
clean ones and broken records), run the streaming job until everything is scanned and
committed, print what it found in plain language, and shut everything down."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from connectors.kafka_admin import committed_offsets, contract_topics, end_offsets
from connectors.kafka_io import consume, produce_lines
from zeroscan.settings import ROOT, Settings

SAMPLE = ROOT / "samples"
# Job start (mini-cluster, Python workers, brand catch-up) takes ~20-40 s on 2 cores.
JOB_TIMEOUT_S = 300.0


def _last_error(log: Path) -> str:
    """The job's own last `error:` line in its log (the log's last 64 KiB), to show with its exit."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 65536))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in tail if line.startswith("error: ")]
    return f"\n{errors[-1]}" if errors else ""


def _wait_scanned(settings: Settings, job: subprocess.Popen, timeout_s: float) -> None:
    """Until the job's committed offsets reach the end of `listings` (Flink commits them when a
    checkpoint completes, i.e. when the matching output transactions are committed)."""
    deadline = time.monotonic() + timeout_s
    target = end_offsets(settings.kafka, settings.topics.listings)
    while time.monotonic() < deadline:
        if job.poll() is not None:
            raise RuntimeError(f"scanner job exited early with {job.returncode}; see {settings.state_dir}/job.log"
                               + _last_error(settings.state_dir / "job.log"))
        done = committed_offsets(settings.kafka, settings.consumer_group, settings.topics.listings)
        if all(done.get(p, 0) >= off for p, off in target.items()):
            return
        time.sleep(1.0)
    raise RuntimeError(f"the job did not finish the sample within {timeout_s}s")


def run_demo(settings: Settings, keep_running: bool = False) -> int:
    from zeroscan.dev_broker import dev_broker

    broker = dev_broker(settings)
    started_here = not broker.status().running
    print("1/5 starting Kafka (KRaft, single node) ...", flush=True)
    broker.up(contract_topics(settings.topics))
    job = None
    try:
        with open(SAMPLE / "brands.jsonl", "rb") as f:
            nb = produce_lines(settings.kafka, settings.topics.brands, f, "brand_id")
        with open(SAMPLE / "listings.jsonl", "rb") as f:
            nl = produce_lines(settings.kafka, settings.topics.listings, f, "listing_id")
        print(f"2/5 published {nb} brands to '{settings.topics.brands}' and {nl} listing updates "
              f"to '{settings.topics.listings}'", flush=True)
        log_path = settings.state_dir / "job.log"
        print(f"3/5 starting the PyFlink scanner job (log: {log_path}) ...", flush=True)
        with open(log_path, "ab") as log:
            job = subprocess.Popen([sys.executable, "-m", "zeroscan", "job", "run"], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        t0 = time.monotonic()
        _wait_scanned(settings, job, JOB_TIMEOUT_S)
        print(f"4/5 everything scanned and committed after {time.monotonic() - t0:.0f}s; stopping the job "
              "with a savepoint ...", flush=True)
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
        job = None
        _summary(settings, nl)
        return 0
    finally:
        if job is not None and job.poll() is None:
            job.send_signal(signal.SIGTERM)
            try:
                job.wait(timeout=60)
            except subprocess.TimeoutExpired:
                job.kill()
        if started_here and not keep_running:
            broker.down()
            print("Kafka stopped.", flush=True)


def _summary(settings: Settings, n_listings: int) -> None:
    decisions = [orjson.loads(v) for _k, v, _p, _o in consume(settings.kafka, settings.topics.decisions,
                                                              idle_timeout_s=3)]
    dead = [orjson.loads(v) for _k, v, _p, _o in consume(settings.kafka, settings.topics.dead_letter,
                                                         idle_timeout_s=2)]
    last = {}
    for d in decisions:
        last[d["listing_id"]] = d
    by_action = Counter(d["action"] for d in last.values())
    print(f"5/5 results read back from Kafka (read_committed):\n"
          f"  listing updates scanned: {n_listings} (topic holds {sum(end_offsets(settings.kafka, settings.topics.listings).values())} in all)\n"
          f"  decision records: {len(decisions)}; listings whose latest decision flags them: "
          f"{sum(n for a, n in by_action.items() if a != 'clear')} "
          f"({', '.join(f'{a} {n}' for a, n in sorted(by_action.items()))})\n"
          f"  dead letters: {len(dead)}")
    for d in dead[-4:]:
        print(f"    - {d.get('listing_id') or '(no id)'}: {d['reason']} "
              f"[{d['origin'].get('topic')}/{d['origin'].get('partition')}@{d['origin'].get('offset')}]")
    print("  decisions with their evidence:")
    for d in decisions[-12:]:
        sig = d["signals"][0] if d["signals"] else {}
        det = sig.get("detail", {})
        what = ", ".join(f"{k}={v}" for k, v in det.items() if k in ("mark", "field", "matched", "normalisations", "reason"))
        print(f"    - {d['listing_id']} seller {d['seller_id']}: {d['action'].upper()} for {d['brand_id']} "
              f"(score {d['score']:.2f}; {sig.get('kind')}: {what})")
