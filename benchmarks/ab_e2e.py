"""End to end side by side: the scanner job of two (or more) checkouts, alternating on one broker
and the same seeded traffic, so that both see the same machine at nearly the same time (the
end-to-end figure of one checkout moves by 2x between runs minutes apart on shared cores; a
ratio taken within one run does not).

    .venv/bin/python -m benchmarks.ab_e2e [--listings 300000] [--rounds 2] [--identical 0.5] NAME=CHECKOUT[,VAR=VALUE...] ...

CHECKOUT is the folder of a checkout whose own `python -m zeroscan job run` starts its job, run
from that folder (a worktree of the commit to compare, sharing this virtualenv; build its Java
functions with `make -o .venv/.installed .cache/jars/flink-udf/zeroscan-flink-udf.jar`: without
`-o`, make may reinstall the shared virtualenv from the worktree, and its editable install then
points every `zeroscan` import that does not start in this checkout's folder, a cluster
client's among them, at the worktree's code); VAR=VALUE pairs
are set in that job's environment only (ZEROSCAN_FLINK_OPTS="key=value;..." for Flink options,
say). Each job reads the same listings topic from its own consumer group. Rates are listings per CPU-second of the job's process tree
(as `make bench`), in windows of where the job's source reads (`kafka_measures.SourceReads`): 10-90 % (the bench's), 10-40, 40-70 and
70-95 % and 50-95 %, so JIT warm-up in the first minute shows (the JIT compilers are the JVM's largest CPU user in the first minutes: read the later windows, with more listings, for the warm rate). Prints one line per job and the ratios to the
first NAME; writes nothing else.

With `--waves N`, each job instead reads everything on the topic (so it is warm), then N waves of
identical re-posts (the listings' latest records with a new event time only, which stop on the
Java side) are produced and each is measured between 10 % and 90 % of it read (as `make bench`):
listings per CPU-second of the job's process tree; and the CPU of the job's steps per record, and the
threads that took it, from the wave's production to its last commit (/proc task times): a
change to one step shows there through the JIT's and the machine's noise.
With `--wave-kind price`, the waves are price-only re-posts of the listings' latest records
instead (`benchmarks.traffic.current_price_wave`, new prices in every wave), which the price
loop stops once the scans' verdicts are back.
"""
from __future__ import annotations

import argparse
import signal
from pathlib import Path

from benchmarks import kafka_measures as km
from benchmarks.kafka_measures import bench_kafka, publish_traffic
from benchmarks.traffic import Mix, current_price_wave, identical_wave
from connectors.kafka_admin import end_offsets
from zeroscan.settings import Settings

WINDOWS = ((0.1, 0.9), (0.1, 0.4), (0.4, 0.7), (0.7, 0.95), (0.5, 0.95))


def job_rates(settings: Settings, checkout: str, env: dict[str, str], total: int, log: str) -> dict[str, float]:
    """Run that checkout's job until `total` is committed; the rate per window."""
    job = km.start_job(settings, 1, log, Path(checkout), env)
    try:
        marks, _peak, _t0 = km.poll_committed(settings, job, 0, total, log)
    finally:
        km.stop_job(job)
    out = {}
    for lo, hi in WINDOWS:
        a, b = km.window(marks, 0, total, lo, hi)
        out[f"{round(lo * 100)}-{round(hi * 100)}%"] = km.window_rates(a, b, 0.0)["listings_per_cpu_s"]
    return out


def wave_rates(settings: Settings, checkout: str, env: dict[str, str], waves: list[list[bytes]],
               log: str) -> list[float]:
    """Run that checkout's job over everything on the topic, then produce each of `waves`,
    measuring each in turn; the rate per wave (and the busiest threads, printed)."""
    job = km.start_job(settings, 1, log, Path(checkout), env)
    try:
        first = sum(end_offsets(settings.kafka, settings.topics.listings).values())
        km.poll_committed(settings, job, 0, first, log)
        out = []
        for this in waves:
            cpu0, threads0 = km.cpu_seconds(job.pid), km.thread_cpu(job.pid)
            rate = km.measure_wave(settings, job, first, this, log)["listings_per_cpu_s"]
            cpu, threads = km.cpu_seconds(job.pid) - cpu0, km.thread_cpu(job.pid)
            first += len(this)
            out.append(rate)
            spent = {k: v - threads0.get(k, 0.0) for k, v in threads.items()}
            busiest = sorted(((v, k) for k, v in spent.items()), reverse=True)[:8]
            steps: dict[str, float] = {}
            for k, v in spent.items():
                role = km.thread_role(*k.split("|", 1))
                steps[role] = steps.get(role, 0.0) + v
            print(f"  {rate} per CPU-second; µs per record from the wave's production to its last commit: " +
                  ", ".join(f"{k} {1e6 * v / len(this):.1f}" for k, v in sorted(steps.items())) + "; " +
                  ", ".join(f"{k} {100 * v / cpu:.0f} %" for v, k in busiest), flush=True)
        return out
    finally:
        km.stop_job(job)


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--marks", type=int, default=1000)
    ap.add_argument("--identical", type=float, default=0.0,
                    help="share of unchanged re-posts that change nothing but event_time (benchmarks.traffic.Mix)")
    ap.add_argument("--waves", type=int, default=0,
                    help="measure this many warm waves of identical re-posts per job instead (see above)")
    ap.add_argument("--wave-kind", choices=("identical", "price"), default="identical",
                    help="the waves' re-posts: identical, or price-only ones of the listings' current content")
    ap.add_argument("trees", nargs="+", metavar="NAME=CHECKOUT[,VAR=VALUE...]")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops the running job and the broker
    # (the default action would leave the job running, writing into the next run's folders).
    signal.signal(signal.SIGTERM, _interrupt)
    trees = []
    for spec in args.trees:
        name, sep, rest = spec.partition("=")
        path, *pairs = rest.split(",")
        if not sep or not (Path(path) / "zeroscan").is_dir() or not all("=" in p for p in pairs):
            ap.error(f"{spec!r}: expected NAME=CHECKOUT[,VAR=VALUE...], CHECKOUT a folder holding zeroscan/")
        trees.append((name, str(Path(path).resolve()), dict(p.split("=", 1) for p in pairs)))
    broker, s0 = bench_kafka("ab-e2e", "ab")
    results: dict[str, list[dict[str, float]]] = {}
    try:
        _, _, lines = publish_traffic(s0, args.marks, Mix(identical=args.identical), args.listings)
        same = [identical_wave(lines)] * args.waves if args.waves and args.wave_kind == "identical" else []
        for r in range(args.rounds):
            for j, (name, path, env) in enumerate(trees):
                waves = same
                if args.waves and args.wave_kind == "price":
                    # prices of this job's own: the topic is shared, and a job after this one
                    # must not find its waves' records already there, byte for byte
                    first_n = (r * len(trees) + j) * args.waves
                    waves = [current_price_wave(lines, first_n + w) for w in range(args.waves)]
                s = km.job_settings(s0, f"{name}{r}")
                if args.waves:
                    rates = dict(zip((f"wave {w}" for w in range(args.waves)),
                                     wave_rates(s, path, env, waves, f"{name}{r}.log")))
                else:
                    rates = job_rates(s, path, env, args.listings, f"{name}{r}.log")
                results.setdefault(name, []).append(rates)
                print(f"round {r} {name}: {rates}", flush=True)
    finally:
        broker.down()
    first = trees[0][0]
    for name, _, _ in trees[1:]:
        ratios = [{w: round(x[w] / y[w], 2) for w in x} for x, y in zip(results[name], results[first])]
        print(f"{name} / {first}, per round: {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
