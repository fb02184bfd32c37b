"""The `zeroscan` command: Kafka broker, the scanner job, file-mode scans, topic tools and the
end-to-end demo behind `make run`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from zeroscan.settings import Settings


def _broker(settings: Settings, secure: bool | None = None):
    from connectors.kafka_broker import KafkaBroker

    port = int(settings.bootstrap.rsplit(":", 1)[1])
    return KafkaBroker(settings.state_dir, settings.jar_dir / "kafka-broker", port=port, secure=secure)


def cmd_kafka(args, settings: Settings) -> int:
    from connectors.kafka_admin import ROLES, contract_topics, grant_roles

    if args.secure and args.action != "up":
        print("error: --secure goes with `kafka up`", file=sys.stderr)
        return 2
    try:
        broker = _broker(settings, secure=True if args.secure else None)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.action == "up":
        print(broker.up(contract_topics(settings.topics)).describe())
        if broker.secure:
            n = grant_roles(broker.client_config(), settings.topics, settings.consumer_group,
                            settings.transactional_id_prefix)
            print(f"{n} ACLs for the principals {', '.join(ROLES)} (admin is the super user); a command "
                  f"acts as one with ZEROSCAN_KAFKA_CONFIG={broker.client_properties('cli')} (or scanner, api, "
                  "reader, admin)")
            from connectors.dev_certs import DevCA

            ca = DevCA(broker.secure_dir)
            if not (broker.secure_dir / "api.pem").exists():
                ca.issue("api", "zeroscan-api")
            print(f"HTTPS for the brand API: zeroscan api serve --tls-cert {broker.secure_dir / 'api.pem'} "
                  f"--tls-key {broker.secure_dir / 'api-key.pem'} (clients trust {ca.cert_path})")
    elif args.action == "down":
        print("kafka stopped" if broker.down() else "kafka was not running")
    else:
        st = broker.status()
        print(st.describe())
        return 0 if st.running else 3
    return 0


def cmd_job(args, settings: Settings) -> int:
    from pipelines.scanner_job import latest_restore_point, run_kafka_job

    print(f"scanner job: {settings.topics.listings} -> {settings.topics.decisions} on {settings.bootstrap}, "
          f"parallelism {args.parallelism}; Ctrl-C stops it with a savepoint", flush=True)
    resume = latest_restore_point(settings)
    print(f"resuming from {resume}" if resume else "no savepoint or checkpoint yet: starting fresh", flush=True)
    path = run_kafka_job(settings, args.parallelism)
    print(f"scanner job stopped; savepoint {path}", flush=True)
    return 0


def cmd_scan(args, settings: Settings) -> int:
    import time

    from brand_signals.records import Action
    from pipelines.scanner_job import run_file_scan

    for p in (args.brands, args.listings):
        if not p.is_file():
            print(f"error: {p} is not a file", file=sys.stderr)
            return 2
    dead = args.dead_letter or args.out.with_name(args.out.stem + ".dead-letter.jsonl")
    t0 = time.monotonic()
    if args.feedback is not None and not args.feedback.is_file():
        print(f"error: {args.feedback} is not a file", file=sys.stderr)
        return 2
    res = run_file_scan(settings, args.brands, args.listings, args.out, dead, args.parallelism, args.feedback)
    took = time.monotonic() - t0
    counts = _action_counts(args.out)
    flagged = ", ".join(f"{a.value} {counts.get(a.value, 0)}" for a in Action)
    print(f"scanned {res.records} records in {took:.1f}s: {res.decisions} decisions ({flagged}), "
          f"{res.dead_letters} dead letters, {res.ledger_events} feedback ledger events")
    print(f"decisions: {args.out}\ndead letters: {dead}")
    return 0


def _action_counts(path: Path) -> dict[str, int]:
    import orjson

    last: dict[str, str] = {}
    with open(path, "rb") as f:
        for line in f:
            d = orjson.loads(line)
            last[d["listing_id"]] = d["action"]
    counts: dict[str, int] = {}
    for a in last.values():
        counts[a] = counts.get(a, 0) + 1
    return counts


def cmd_produce(args, settings: Settings) -> int:
    from connectors.kafka_io import produce_lines

    with open(args.file, "rb") as f:
        n = produce_lines(settings.kafka, args.topic, f, args.key_field)
    print(f"sent {n} records to {args.topic}")
    return 0


# A person at the terminal: a topic that does not show up within this is reported as missing.
CONSUME_METADATA_TIMEOUT_S = 5.0


def cmd_consume(args, settings: Settings) -> int:
    from connectors.kafka_io import TopicMissingError, consume

    try:
        for _key, value, _p, _o in consume(settings.kafka, args.topic, idle_timeout_s=args.idle,
                                            max_messages=args.max, stop_at_end=True,
                                            metadata_timeout_s=CONSUME_METADATA_TIMEOUT_S):
            sys.stdout.write((value or b"null").decode("utf-8", "replace") + "\n")
    except TopicMissingError as e:
        print(f"error: {e} on {settings.bootstrap}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from zeroscan.demo import run_demo

    return run_demo(settings, keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zeroscan", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="the development Kafka broker (KRaft, single node)")
    k.add_argument("action", choices=["up", "down", "status"])
    k.add_argument("--secure", action="store_true",
                   help="up: SASL_SSL (SCRAM-SHA-512) listener, dev CA certificates, ACLs per principal")
    k.set_defaults(fn=cmd_kafka)

    j = sub.add_parser("job", help="the streaming scanner job on Kafka")
    j.add_argument("action", choices=["run"])
    j.add_argument("--parallelism", type=int, default=1)
    j.set_defaults(fn=cmd_job)

    s = sub.add_parser("scan", help="scan JSON Lines files on the local mini-cluster (no Kafka)")
    s.add_argument("--brands", type=Path, required=True)
    s.add_argument("--listings", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--feedback", type=Path, help="feedback events (brand removals, appeals)")
    s.add_argument("--dead-letter", type=Path, help="default: OUT's name + .dead-letter.jsonl")
    s.add_argument("--parallelism", type=int, default=1)
    s.set_defaults(fn=cmd_scan)

    p = sub.add_parser("produce", help="send a JSON Lines file to a topic, one record per line")
    p.add_argument("topic")
    p.add_argument("file", type=Path)
    p.add_argument("--key-field", default="listing_id", help="JSON field used as the message key")
    p.set_defaults(fn=cmd_produce)

    c = sub.add_parser("consume", help="print a topic's committed records from the beginning to its end")
    c.add_argument("topic")
    c.add_argument("--max", type=int)
    c.add_argument("--idle", type=float, default=3.0, help="stop after this many seconds without a record, even before the end")
    c.set_defaults(fn=cmd_consume)

    from zeroscan import brands_cli, feedback_cli

    brands_cli.register(sub)
    feedback_cli.register(sub)

    sub.add_parser("bench", help="throughput benchmark through the real broker and job (zeroscan bench --help)")

    d = sub.add_parser("demo", help="what `make run` does: broker, sample data, job, summary")
    d.add_argument("--keep-running", action="store_true", help="leave the broker up afterwards")
    d.set_defaults(fn=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        from benchmarks.pipeline_bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # librdkafka retries while a fresh broker settles: not worth a warning
        logging.getLogger("librdkafka").setLevel(logging.ERROR)
    return args.fn(args, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
