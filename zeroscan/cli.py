"""The `zeroscan` command: Kafka broker, the scanner job, file-mode scans, topic tools and the
end-to-end demo behind `make run`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from zeroscan.dev_broker import dev_broker
from zeroscan.settings import Settings


def cmd_kafka(args, settings: Settings) -> int:
    from connectors.kafka_admin import ROLES, contract_topics, grant_roles

    if args.secure and args.action != "up":
        print("error: --secure goes with `kafka up`", file=sys.stderr)
        return 2
    try:
        broker = dev_broker(settings, secure=True if args.secure else None)
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


def dev_cluster(settings: Settings, taskmanagers: int = 2):
    """The dev session cluster: its home under the state folder; checkpoint and savepoint
    storage given to the daemons at start (ZEROSCAN_CHECKPOINT_DIR / ZEROSCAN_SAVEPOINT_DIR,
    else folders in its home), as a production cluster has them in its own config.yaml."""
    from connectors.flink_cluster import FlinkCluster

    home = settings.state_dir / "flink-cluster"
    return FlinkCluster(home, settings.flink_conf_dir, taskmanagers=taskmanagers,
                        rest_port=settings.flink_rest_port, rpc_port=settings.flink_rpc_port, dynamic={
                            "execution.checkpointing.dir": settings.checkpoint_dir or (home / "checkpoints").as_uri(),
                            "execution.checkpointing.savepoint-dir":
                                settings.savepoint_dir or (home / "savepoints").as_uri()})


# What `flink run -pyfs` ships to the cluster: the job's Python packages.
JOB_PACKAGES = ("brand_signals", "connectors", "pipelines", "models", "zeroscan")


def cmd_cluster(args, settings: Settings) -> int:
    from zeroscan.settings import ROOT

    cluster = dev_cluster(settings, args.taskmanagers)
    if args.action == "up":
        print(cluster.up().describe())
    elif args.action == "down":
        stopped = cluster.down()
        print(f"stopped {', '.join(stopped)}" if stopped else "flink cluster was not running")
    elif args.action == "submit":
        job_id = cluster.submit_python(ROOT / "pipelines" / "scanner_job.py", python=sys.executable,
                                       pyfiles=[ROOT / p for p in JOB_PACKAGES],
                                       job_args=["--", "--parallelism", str(args.parallelism)], env={})
        from connectors.job_ops import record_job

        record_job(settings.state_dir, job_id, cluster.rest_url)
        print(f"submitted job {job_id}; web UI {cluster.rest_url}")
    else:
        st = cluster.status()
        print(st.describe())
        return 0 if st.running else 3
    return 0


# What a stopping `job run` may take beyond its savepoint wait and cancel before it exits anyway.
EXIT_GRACE_S = 30


def cmd_job(args, settings: Settings) -> int:
    if args.action == "status":
        return _job_status(args, settings)
    from connectors.job_ops import arm_exit_deadline, find_web_ui, record_job
    from pipelines.scanner_job import (CANCEL_TIMEOUT_S, latest_restore_point, plan_mismatch, restore_mismatch_help,
                                       run_kafka_job)

    def started(job_id: str) -> None:
        web_ui = find_web_ui(job_id)
        record_job(settings.state_dir, job_id, web_ui)
        print(f"job {job_id} started; web UI {web_ui or '(not found)'}", flush=True)

    print(f"scanner job: {settings.topics.listings} -> {settings.topics.decisions} on {settings.bootstrap}, "
          f"parallelism {args.parallelism}; Ctrl-C stops it with a savepoint", flush=True)
    resume = latest_restore_point(settings)
    print(f"resuming from {resume}" if resume else "no savepoint or checkpoint yet: starting fresh", flush=True)
    try:
        # Once a stop begins, this process ends within a bound even if the job's stop or the
        # interpreter's exit hangs: its threads' stacks go to stderr first.
        ended = run_kafka_job(settings, args.parallelism, started=started, stopping=lambda: arm_exit_deadline(
            settings.stop_timeout_s + CANCEL_TIMEOUT_S + EXIT_GRACE_S))
    except RuntimeError as e:   # ended without being asked (cancelled from outside, failed for good)
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:      # noqa: BLE001 - a restore point of another plan; anything else re-raised
        if resume is None or not plan_mismatch(e):
            raise
        print(f"error: {restore_mismatch_help(resume, settings)}", file=sys.stderr, flush=True)
        return 2
    if ended.savepoint:
        print(f"scanner job stopped; savepoint {ended.savepoint}", flush=True)
    else:
        print(f"scanner job stopped without a savepoint: {ended.why}; cancelled, the next run resumes from "
              f"{latest_restore_point(settings) or '(no checkpoint yet: the start)'}", flush=True)
        # The job is cancelled, but its Python workers (threads of this process) may still be inside
        # a batch, such as an image fetch within its budgets; whatever they produce is discarded,
        # so the process ends now rather than wait for them at the interpreter's exit.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_retro(args, settings: Settings) -> int:
    """The retro worker: re-checks live listings when a brand is approved or gains marks or
    images, and a brand's open flags when it is withdrawn or authorises a seller."""
    from connectors.retro_worker import run_retro

    def handled(h) -> None:
        print(f"brand {h.delta.brand_id} v{h.delta.version} ({h.delta.reason}): {h.scanned} live listings read, "
              f"{h.candidates} candidates, {h.open_flags} open flags, {h.sent} rescans in {h.seconds:.2f}s", flush=True)

    print(f"retro worker: {settings.topics.brands} + {settings.topics.listings} -> {settings.topics.rescan} on "
          f"{settings.bootstrap}; live listings in {settings.state_dir / 'retro'}; Ctrl-C stops it", flush=True)
    run_retro(settings.kafka, settings.topics, settings.state_dir / "retro", settings.retro_processes,
              on_handled=handled)
    print("retro worker stopped", flush=True)
    return 0


def _job_status(args, settings: Settings) -> int:
    """Lag per partition, last checkpoint and restarts of the job `job run` or `cluster submit`
    recorded (or the one job running behind --web-ui)."""
    import time

    from connectors.job_ops import job_status, recorded_job, rest_get, running_job_id

    rec = recorded_job(settings.state_dir) or {}
    web_ui = args.web_ui or rec.get("web_ui") or f"http://127.0.0.1:{settings.flink_rest_port}"
    job_id = args.job_id or rec.get("job_id")
    try:
        if job_id is None or args.web_ui and not args.job_id:
            job_id = running_job_id(web_ui)
        if job_id is None:
            print(f"no single running job at {web_ui}; name one with --job-id", file=sys.stderr)
            return 3
        rest_get(web_ui, f"/jobs/{job_id}")
    except OSError as e:
        print(f"no Flink REST API answering for job {job_id} at {web_ui}: {e}", file=sys.stderr)
        return 3
    st = job_status(web_ui, job_id, settings.bootstrap, settings.consumer_group,
                    [settings.topics.listings, settings.topics.feedback])
    print(st.describe(int(time.time() * 1000)))
    return 0 if st.state == "RUNNING" else 3


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
    from zeroscan.progress import ScanProgress, wanted

    res = run_file_scan(settings, args.brands, args.listings, args.out, dead, args.parallelism, args.feedback,
                        progress=lambda total: ScanProgress(total, wanted(args.quiet)))
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
    """Print a topic's committed records, one per line (with --keys: key TAB value)."""
    from connectors.kafka_io import BrokerUnreachableError, TopicMissingError, read_topic

    if not args.verbose:  # a missing broker is reported once, below, not by every connection attempt
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    # Without --follow, stop when nothing new arrived for --idle seconds even before the end.
    idle = None if args.follow else args.idle
    out = sys.stdout
    try:
        for key, value, _p, _o in read_topic(settings.kafka, args.topic, group=args.group, follow=args.follow,
                                             max_messages=args.max, timeout_s=args.timeout, idle_timeout_s=idle,
                                             metadata_timeout_s=CONSUME_METADATA_TIMEOUT_S):
            line = (value or b"null").decode("utf-8", "replace")
            if args.keys:
                line = ("null" if key is None else key.decode("utf-8", "replace")) + "\t" + line
            out.write(line + "\n")
            if args.follow:
                out.flush()
    except BrokerUnreachableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TopicMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # the way to stop --follow; offsets of --group are committed
        out.flush()
        return 0
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from zeroscan.demo import run_demo

    try:
        return run_demo(settings, keep_running=args.keep_running)
    except RuntimeError as e:   # the job ended early or too slowly: its own error line is in the message
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


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
    j.add_argument("action", choices=["run", "status"])
    j.add_argument("--parallelism", type=int, default=1)
    j.add_argument("--web-ui", help="status: the Flink REST address (default: the one `job run` or "
                                    "`cluster submit` recorded, else the dev cluster's)")
    j.add_argument("--job-id", help="status: the job (default: the recorded one, else the only running one)")
    j.set_defaults(fn=cmd_job)

    r = sub.add_parser("retro", help="the retro worker: re-check live listings after brand changes (beside the job)")
    r.add_argument("action", choices=["run"])
    r.set_defaults(fn=cmd_retro)

    fc = sub.add_parser("cluster", help="a standalone Flink session cluster on this machine (127.0.0.1)")
    fc.add_argument("action", choices=["up", "down", "status", "submit"])
    fc.add_argument("--taskmanagers", type=int, default=2)
    fc.add_argument("--parallelism", type=int, default=2, help="submit: the job's parallelism")
    fc.set_defaults(fn=cmd_cluster)

    s = sub.add_parser("scan", help="scan JSON Lines files on the local mini-cluster (no Kafka)")
    s.add_argument("--brands", type=Path, required=True)
    s.add_argument("--listings", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--feedback", type=Path, help="feedback events (brand removals, appeals)")
    s.add_argument("--dead-letter", type=Path, help="default: OUT's name + .dead-letter.jsonl")
    s.add_argument("--parallelism", type=int, default=1)
    s.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (there is none either when stderr is not a terminal)")
    s.set_defaults(fn=cmd_scan)

    p = sub.add_parser("produce", help="send a JSON Lines file to a topic, one record per line")
    p.add_argument("topic")
    p.add_argument("file", type=Path)
    p.add_argument("--key-field", default="listing_id", help="JSON field used as the message key")
    p.set_defaults(fn=cmd_produce)

    c = sub.add_parser("consume", help="print a topic's committed records (read_committed), from the beginning "
                                       "to its end, or on with --follow")
    c.add_argument("topic")
    c.add_argument("--keys", action="store_true", help="print each record as KEY<TAB>VALUE (null for no key)")
    c.add_argument("--follow", "-f", action="store_true",
                   help="keep reading new records past the end until Ctrl-C, --max-records or --timeout")
    c.add_argument("--group", metavar="G", help="read as a member of consumer group G: from its committed "
                                                 "offsets (the beginning for a new group), committing what was printed")
    c.add_argument("--max-records", "--max", dest="max", type=int, metavar="N", help="stop after N records")
    c.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds in all")
    c.add_argument("--idle", type=float, default=3.0,
                   help="without --follow: stop after this many seconds without a record, even before the end")
    c.set_defaults(fn=cmd_consume)

    from zeroscan import brands_cli, feedback_cli

    brands_cli.register(sub)
    feedback_cli.register(sub)

    d = sub.add_parser("demo", help="what `make run` does: broker, sample data, job, summary")
    d.add_argument("--keep-running", action="store_true", help="leave the broker up afterwards")
    d.set_defaults(fn=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # librdkafka retries while a fresh broker settles: not worth a warning
        logging.getLogger("librdkafka").setLevel(logging.ERROR)
    return args.fn(args, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
