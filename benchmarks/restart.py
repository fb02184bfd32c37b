"""How long a restart takes on topics with history: the feedback ledger with 10,000 events and
`decisions` with 100,000 records, both written in transactions (some aborted, as a job that was
killed leaves them), on a broker of its own.

    make bench-restart     or     .venv/bin/python -m benchmarks.restart [--ledger 10000] [--decisions 100000]

Measures, one after another: the ledger replay every scan operator does at start (in process),
the decisions replay the API's signal index does, `zeroscan api serve` from launch to a served
request, and `zeroscan job run` from launch to the first new decision visible to a
read_committed reader. Writes benchmarks/results/restart.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import requests

from benchmarks.kafka_measures import plaintext_env
from brand_signals.contract import brand_from_obj
from brand_signals.registry import Actor, BrandRegistry
from connectors.brand_feed import LedgerFeed
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.feedback_io import SignalIndex
from connectors.kafka_admin import contract_topics, ensure_topics
from connectors.kafka_broker import KafkaBroker, free_port_pair
from connectors.kafka_client import producer
from connectors.kafka_io import consume, produce_lines
from zeroscan.accounts import AccountStore
from zeroscan.settings import ROOT, KafkaClientConfig, Settings, Topics

RESULTS = ROOT / "benchmarks" / "results"
TXN_RECORDS = 500        # records per transaction
ABORT_EVERY = 10         # every 10th transaction is aborted (its records must be skipped)
T0 = 1_700_000_000_000


def _fill(kafka: KafkaClientConfig, topic: str, records: list[tuple[bytes, bytes]]) -> int:
    """Write in transactions of TXN_RECORDS, aborting every ABORT_EVERY-th; returns the committed count."""
    p = producer(kafka, {"transactional.id": f"bench-{uuid.uuid4()}", "linger.ms": 20})
    p.init_transactions(30)
    committed = 0
    for n, i in enumerate(range(0, len(records), TXN_RECORDS)):
        chunk = records[i:i + TXN_RECORDS]
        p.begin_transaction()
        for k, v in chunk:
            while True:
                try:
                    p.produce(topic, key=k, value=v)
                    break
                except BufferError:
                    p.poll(0.05)
        p.flush(60)
        if n % ABORT_EVERY == ABORT_EVERY - 1:
            p.abort_transaction(60)
        else:
            p.commit_transaction(60)
            committed += len(chunk)
    return committed


def _ledger_events(n: int) -> list[tuple[bytes, bytes]]:
    kinds = ["removal_accepted", "appeal_rejected", "removal_refused", "removal_held"]
    return [(f"b{i}".encode(), orjson.dumps({"kind": kinds[i % 4], "listing_id": f"b{i}", "brand_id": f"brand-{i % 50}",
                                            "event_time": T0 + i, "actor": "owner", "seller_id": f"s-{i % 997}"}))
            for i in range(n)]


def _decisions(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"d{i}".encode(), orjson.dumps({"listing_id": f"d{i}", "seller_id": f"s-{i % 997}",
                                            "brand_id": f"brand-{i % 50}", "action": "review", "score": 0.9,
                                            "signals": [], "decided_at": T0 + i, "brand_version": 1,
                                            "model_version": "bench"}))
            for i in range(n)]


def _env(settings: Settings) -> dict[str, str]:
    return {**plaintext_env(), "ZEROSCAN_BOOTSTRAP": settings.bootstrap, "ZEROSCAN_STATE_DIR": str(settings.state_dir),
            "ZEROSCAN_TOPIC_PREFIX": settings.topics.listings[: -len("listings")], "ZEROSCAN_IMAGES": "off"}


def _api_start_s(settings: Settings, token: str) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with open(settings.state_dir / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "zeroscan", "api", "serve", "--port", str(port)], cwd=ROOT,
                               env=_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if api.poll() is not None:
                raise RuntimeError((settings.state_dir / "api.log").read_text()[-2000:])
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v1/brands/bench/signals",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if r.status_code == 200:
                    return time.monotonic() - t0
            except requests.ConnectionError:
                pass
            if time.monotonic() - t0 > 300:
                raise RuntimeError("the API did not start within 300 s")
            time.sleep(0.2)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(60)


def _job_first_decision_s(settings: Settings) -> float:
    t0 = time.monotonic()
    with open(settings.state_dir / "job.log", "wb") as log:
        job = subprocess.Popen([sys.executable, "-m", "zeroscan", "job", "run"], cwd=ROOT, env=_env(settings),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        produce_lines(settings.kafka, settings.topics.listings, [orjson.dumps(
            {"listing_id": "probe-1", "seller_id": "s-1", "event_time": T0, "title": "Benchmarko wireless earbuds"})],
            "listing_id")
        while True:
            if job.poll() is not None:
                raise RuntimeError((settings.state_dir / "job.log").read_text()[-2000:])
            # the probe's decision is the newest record; read the topic to its end each time
            if any(k == b"probe-1" for k, _v, _p, _o in consume(settings.kafka, settings.topics.decisions,
                                                                stop_at_end=True)):
                return time.monotonic() - t0
            if time.monotonic() - t0 > 600:
                raise RuntimeError("no decision within 600 s")
            time.sleep(0.5)
    finally:
        job.send_signal(signal.SIGTERM)
        job.wait(180)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ledger", type=int, default=10_000)
    ap.add_argument("--decisions", type=int, default=100_000)
    args = ap.parse_args(argv)
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="zeroscan-restart-") as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka", base.jar_dir / "kafka-broker", port=free_port_pair())
        broker.up()
        try:
            settings = dataclasses.replace(base, bootstrap=broker.bootstrap, kafka_properties=(), state_dir=Path(tmp) / "state",
                                           topics=Topics.prefixed("bench-"))
            settings.state_dir.mkdir(parents=True)
            ensure_topics(settings.kafka, contract_topics(settings.topics, partitions=2))
            token = AccountStore.at_state_dir(settings.state_dir).create("bench")[1]
            pub = KafkaBrandPublisher.from_settings(settings)
            with BrandRegistry.at_state_dir(settings.state_dir, pub) as reg:
                reg.put(brand_from_obj({"brand_id": "bench", "name": "Benchmarko", "trademarks": ["Benchmarko"],
                                        "version": 1}), Actor.account("bench"))
                reg.approve("bench", Actor.admin())
            pub.close()
            print(f"filling {settings.topics.ledger} with {args.ledger} and {settings.topics.decisions} with "
                  f"{args.decisions} records (transactions of {TXN_RECORDS}, 1 in {ABORT_EVERY} aborted) ...", flush=True)
            ledger_committed = _fill(settings.kafka, settings.topics.ledger, _ledger_events(args.ledger))
            decisions_committed = _fill(settings.kafka, settings.topics.decisions, _decisions(args.decisions))

            t0 = time.monotonic()
            feed = LedgerFeed(settings.kafka, settings.topics.ledger)
            ledger_s = time.monotonic() - t0
            feed.close()
            t0 = time.monotonic()
            index = SignalIndex(settings.kafka, settings.topics.decisions)
            signals_s = time.monotonic() - t0
            index.close()
            print(f"ledger replay {ledger_s:.2f} s, decisions replay {signals_s:.2f} s", flush=True)
            api_s = _api_start_s(settings, token)
            print(f"API start to first answer {api_s:.1f} s", flush=True)
            job_s = _job_first_decision_s(settings)
            print(f"job start to first new decision {job_s:.1f} s", flush=True)
        finally:
            broker.down()
    result = {"ledger_events": args.ledger, "ledger_committed": ledger_committed,
              "decisions": args.decisions, "decisions_committed": decisions_committed,
              "txn_records": TXN_RECORDS, "abort_every": ABORT_EVERY,
              "ledger_replay_s": round(ledger_s, 2), "decisions_replay_s": round(signals_s, 2),
              "api_start_s": round(api_s, 1), "job_start_to_first_decision_s": round(job_s, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "restart.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
