"""What Flink itself costs per record, next to the Python passthrough and zeroscan's identical
re-posts, in one run on one broker, each job with the scanner job's own settings
(flink-conf/config.yaml, the embedded mini-cluster, the same Kafka source options, 2 s
checkpoints, exactly-once sinks):
- `copy`: a Flink SQL job that only copies the listings topic to another topic;
- `keyed`: the scanner job's unchanged-content filter alone (the listing id, the same Java
  fingerprint, the last fingerprint per listing in keyed state), on a wave of identical re-posts
  after it has read the topic; `context`: the same with the scanner job's kept record for
  judging feedback (the listing's latest update, LAST_VALUE in the same OVER aggregate);
- zeroscan's own job on the same wave (`kafka_measures.fast_path_e2e`).
An identical re-post never reaches Python and writes nothing; the two Flink jobs are the floors
under that path.

    .venv/bin/python -m benchmarks.flink_ceiling [--listings 200000] [--rounds 2]

Writes benchmarks/results/flink_ceiling.json (or --out; ZEROSCAN_FLINK_OPTS, which every job
reads, is recorded in its command). Per CPU-second as in pipeline_bench: the CPU of the
measured process tree (the job's client, JVM and workers; the passthrough's own process), not the
broker's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.kafka_measures import (_measure, bench_kafka, fast_path_e2e, idle_cores, job_settings, marginal_us,
                                       passthrough_rate, publish_traffic, start_job, stop_job)
from benchmarks.traffic import Mix, identical_wave
from connectors.kafka_admin import end_offsets, ensure_topics
from connectors.stop_request import StopRequest
from zeroscan.settings import ROOT, Settings

RESULTS = ROOT / "benchmarks" / "results"
COPY_TOPIC = "bench-flink-copy"
IDLE_S = 10.0  # how long a job's idle cost is measured (five checkpoint intervals)
JOB = ["benchmarks.flink_ceiling", "--job"]


def ceiling_job(kind: str) -> None:
    """Run in the job's process (`--job KIND`) until SIGTERM. `copy`: listings -> COPY_TOPIC,
    exactly once. `keyed`: the scanner job's unchanged-content filter alone: the listing id
    (JSON_VALUE), the same Java fingerprint, the last one per listing in keyed state (LAG over
    the listing, RocksDB), and the records whose fingerprint changed copied on. `context`:
    `keyed` with the kept record."""
    from pipelines.scanner_job import (EXACTLY_ONCE_SINK, _kafka_table, fingerprint_sql, make_table_env,
                                       register_java_functions, source_options)

    settings = Settings.from_env()
    t_env = make_table_env(settings, 1, kafka=True)
    t_env.execute_sql(_kafka_table(
        "src", settings.topics.listings, settings, "`text` STRING, `partition` INT METADATA VIRTUAL",
        source_options(settings)))
    t_env.execute_sql(_kafka_table(
        "dst", COPY_TOPIC, settings, "`v` STRING",
        {"value.format": "raw", **EXACTLY_ONCE_SINK,
         "sink.transactional-id-prefix": f"{settings.transactional_id_prefix}-{kind}"}))
    if kind == "copy":
        query = "INSERT INTO dst SELECT `text` FROM src"
    else:
        register_java_functions(t_env)
        fp = fingerprint_sql(settings.unchanged_recheck_s).replace("is_listing", "TRUE")
        # `context`: with the scanner job's kept record too (the listing's latest update, in the
        # same OVER aggregate's accumulator, for judging feedback).
        # It is what the job writes, so the planner cannot prune it.
        kept = ", LAST_VALUE(body) OVER w AS kept" if kind == "context" else ", body AS kept"
        query = f"""INSERT INTO dst SELECT kept FROM (
            SELECT body, fp, LAG(fp) OVER w AS prev_fp{kept}
            FROM (SELECT body, {fp} AS fp, lid, pt
                  FROM (SELECT `text` AS body, `partition` AS part, JSON_VALUE(`text`, '$.listing_id') AS lid,
                               PROCTIME() AS pt FROM src))
            WINDOW w AS (PARTITION BY lid ORDER BY pt))
            WHERE prev_fp IS NULL OR fp <> prev_fp"""
    client = t_env.execute_sql(query).get_job_client()
    stop = StopRequest().install()
    while not stop.wait(0.5):
        status = client.get_job_status().result()
        if status.is_globally_terminal_state():
            raise RuntimeError(f"{kind} job ended: {status.name}")
    client.cancel().result()


def copy_rate(settings: Settings, total: int) -> dict:
    log = "bench-flink-copy.log"
    job = start_job(settings, 1, log, module=JOB + ["copy"])
    try:
        r, startup = _measure(settings, job, 0, total, log)
        idle = idle_cores(job, IDLE_S)
    finally:
        stop_job(job)
    return {**r, "startup_s": round(startup, 1), "idle_cores": idle, "marginal_us": marginal_us(r, idle)}


def run(listings: int, rounds: int) -> dict:
    broker, settings = bench_kafka("bench-ceiling", "c")
    out: dict = {"command": "python -m benchmarks.flink_ceiling " + " ".join(sys.argv[1:]), "listings": listings,
                 "rounds": []}
    try:
        ensure_topics(settings.kafka, {"bench-passthrough": {"partitions": 4}, COPY_TOPIC: {"partitions": 4}})
        _, _, lines = publish_traffic(settings, 1000, Mix(), listings)
        for i in range(rounds):
            total = sum(end_offsets(settings.kafka, settings.topics.listings).values())
            pt_cpu, _ = passthrough_rate(settings, total)
            copy = copy_rate(job_settings(settings, f"copy{i}"), total)
            wave = [identical_wave(lines)]
            keyed = fast_path_e2e(job_settings(settings, f"keyed{i}"), wave, idle_s=IDLE_S, module=JOB + ["keyed"])[0]
            context = fast_path_e2e(job_settings(settings, f"context{i}"), wave, idle_s=IDLE_S, module=JOB + ["context"])[0]
            ident = fast_path_e2e(job_settings(settings, f"zs{i}"), wave, idle_s=IDLE_S)[0]
            jobs = {"flink_copy": copy, "flink_keyed_filter_identical": keyed,
                    "flink_keyed_filter_with_kept_record_identical": context, "zeroscan_identical": ident}
            r = {"python_passthrough_per_cpu_s": round(pt_cpu), **jobs,
                 "of_passthrough": {name: round(x["listings_per_cpu_s"] / pt_cpu, 3) for name, x in jobs.items()}}
            print(f"round {i + 1}: {json.dumps(r)}", flush=True)
            out["rounds"].append(r)   # the next round reads the whole topic, this round's wave too
    finally:
        broker.down()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "flink_ceiling.json")
    ap.add_argument("--job", choices=("copy", "keyed", "context"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.job:
        ceiling_job(args.job)
        return 0
    res = run(args.listings, args.rounds)
    if os.environ.get("ZEROSCAN_FLINK_OPTS"):
        res["command"] = f"ZEROSCAN_FLINK_OPTS={os.environ['ZEROSCAN_FLINK_OPTS']} {res['command']}"
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
