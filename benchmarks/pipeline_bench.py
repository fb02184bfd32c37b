"""Throughput benchmark: the scanner end to end through a real Kafka broker and the PyFlink
job, side by side with a plain Python Kafka passthrough (the I/O ceiling), a Flink SQL copy of
the topic with the job's own settings (Flink's floor, benchmarks/flink_ceiling.py) and a naive
scanner that loops over every mark (what a small team writes first), on the same seeded traffic.

    make bench   or   .venv/bin/python -m benchmarks.pipeline_bench [--listings 400000] [--marks 1000]
                            [--parallelism 1,2] [--scale-marks 1000000] [--quick]
                     .venv/bin/python -m benchmarks.pipeline_bench --plot-only   (redraw the chart only)

Writes benchmarks/results/latest.json, latest.md and latest.png (matplotlib: throughput per
CPU-second against the targets, and the latency panel). "Per core" divides by the CPU
seconds the measured processes used in the measured interval (user + system, every process of
the job: Python client, JVM, Python workers), so it does not depend on how busy the machine's
other core was.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import orjson

from benchmarks.flink_ceiling import COPY_TOPIC, IDLE_S, copy_rate
from benchmarks.kafka_measures import bench_kafka, e2e, fast_path_e2e, job_settings, latency, passthrough_rate, publish_traffic
from benchmarks.traffic import SEED, Mix, Traffic, brand_records, current_price_wave, identical_wave
from brand_signals.catalog import Catalog
from brand_signals.contract import listing_from_obj, parse_brand
from brand_signals.scanner import Scanner
from connectors.brand_feed import freeze_long_lived, space_young_collections
from connectors.kafka_admin import ensure_topics
from connectors.serde import Origin
from pipelines.steps import ScanContext, scan_records
from zeroscan.progress import bar
from zeroscan.settings import DEFAULT_GC_YOUNG, ROOT

RESULTS = ROOT / "benchmarks" / "results"
# Project Zero's volume: 8 billion listing updates a day.
DAILY_UPDATES = 8_000_000_000
CORE_BATCH = 2000  # rows per scan call, as python.fn-execution.arrow.batch.size
# The targets (README, "Throughput"): 8 billion updates a day on 16 cores, the re-post fast path,
# and p99 latency; the checkpoint interval (flink-conf/config.yaml) is the floor of latency.
TARGET_E2E_PER_CPU_S = 5_800
TARGET_FAST_PATH_PER_CPU_S = 50_000
TARGET_P99_S = 5.0
CHECKPOINT_INTERVAL_S = 2.0


# --- in-process measurements ----------------------------------------------------------------

def _scan_all(ctx: ScanContext, lines: list[bytes]) -> float:
    """CPU seconds to run the scan operator's batch step over `lines`, in operator-sized batches."""
    origins = [Origin("listings", 0, 0)] * CORE_BATCH
    t0 = time.process_time()
    for i in range(0, len(lines), CORE_BATCH):
        chunk = lines[i:i + CORE_BATCH]
        scan_records(chunk, origins[:len(chunk)], ctx, 0)
    return time.process_time() - t0


def _context(brands: list[dict]) -> ScanContext:
    # As the scan operator at its start: word lists and frequencies loaded before timing, what
    # is loaded then kept out of the cyclic collector's walks, and its young collections spaced.
    Scanner.load_reference_data()
    ctx = ScanContext(Catalog.build([parse_brand(orjson.dumps(b)) for b in brands], version=1), Scanner("bench"))
    freeze_long_lived()
    space_young_collections(DEFAULT_GC_YOUNG)
    return ctx


def core_rate(brands: list[dict], lines: list[bytes]) -> float:
    """Listings per CPU second through parse + scan + decide (the scan operator's work)."""
    return len(lines) / _scan_all(_context(brands), lines)


def fast_path_rate(brands: list[dict], lines: list[bytes]) -> float:
    """The same, for unchanged re-posts only, after their content was scanned once."""
    ctx = _context(brands)
    _scan_all(ctx, lines)
    return len(lines) / _scan_all(ctx, lines)


def steady_setup(brands: list[dict], n: int = 40_000) -> tuple[ScanContext, list[bytes]]:
    """The catalogue's own traffic with warm word caches and no content memo (every listing is
    matched, as new content is): the first half of n listings has warmed the index's per-word
    caches; the context with the memo off and the second half, to measure."""
    traffic = Traffic(brands)
    traffic.warm(2000)
    lines = list(traffic.lines(n))
    ctx = _context(brands)
    _scan_all(ctx, lines[: n // 2])
    return ScanContext(ctx.catalog, Scanner("bench", memo_entries=0)), lines[n // 2:]


def flagged_share(cold_memo: ScanContext, measured: list[bytes]) -> float:
    """The share of `steady_setup`'s measured listings that get a decision: a bigger catalogue
    of pseudo-word marks holds more of the traffic's words and their misspellings ("Mini",
    "Model", "Cashio" for the Casio of a title), so it flags more listings, and a flagged
    listing costs ~3× one that presents nothing (its evidence, decisions and fingerprint)."""
    listings = [listing_from_obj(orjson.loads(line)) for line in measured]
    return sum(1 for d in cold_memo.scanner.scan(cold_memo.catalog, listings, 0) if d is not None) / len(listings)


def _scale_one(brands: list[dict]) -> tuple[float, float]:
    """Matching work per CPU second (`steady_setup`) and `flagged_share` of one catalogue, built
    once (~40 s at 1 M marks)."""
    cold_memo, measured = steady_setup(brands)
    return len(measured) / _scan_all(cold_memo, measured), flagged_share(cold_memo, measured)


def scale(args, out: dict) -> None:
    (small, small_flagged), (large, large_flagged) = _scale_one(brand_records(args.marks)), _scale_one(brand_records(args.scale_marks))
    out["scale"] = {"marks_small": args.marks, "marks_large": args.scale_marks,
                    "core_small_per_cpu_s": round(small), "core_large_per_cpu_s": round(large),
                    "flagged_share_small": round(small_flagged, 4), "flagged_share_large": round(large_flagged, 4)}
    out["throughput_1m_marks_over_1k"] = round(large / small, 3)
    print(f"scale: {out['scale']}", flush=True)


def naive_rate(brands: list[dict], lines: list[bytes]) -> float:
    """Parse, then test every mark against the lower-cased title and brand (no disguises)."""
    marks = [(b["brand_id"], m.lower(), frozenset(b["authorized_sellers"])) for b in brands for m in b["trademarks"]]
    t0 = time.process_time()
    flagged = 0
    for raw in lines:
        rec = json.loads(raw)
        text = (rec.get("title", "") + " " + rec.get("brand", "")).lower()
        for _bid, mark, auth in marks:
            if mark in text and rec["seller_id"] not in auth:
                flagged += 1
                break
    return len(lines) / (time.process_time() - t0)


def _repost(line: bytes) -> bytes:
    """The same listing content with a new price and event time (a price-only update)."""
    rec = orjson.loads(line)
    rec["price"] = {"amount": round(rec["price"]["amount"] * 0.97, 2), "currency": "USD"}
    rec["event_time"] += 10_000_000
    return orjson.dumps(rec)


# Waves of the mix spaced as a marketplace's is (benchmarks.traffic Traffic.spaced_wave), after
# the re-post waves: each holds one update of every live listing (~30,000 of them after 200,000
# updates, ~60,000 after the default 400,000).
SPACED_WAVES = 2


def run(args) -> dict:
    broker, settings = bench_kafka("bench", "b")
    out: dict = {"seed": SEED, "command": "python -m benchmarks.pipeline_bench " + " ".join(sys.argv[1:]),
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
                 "mix": dataclasses.asdict(Mix(identical=args.identical)), "marks": args.marks}
    try:
        ensure_topics(settings.kafka, {"bench-passthrough": {"partitions": 4}, COPY_TOPIC: {"partitions": 4}})
        brands, traffic, lines = publish_traffic(settings, args.marks, Mix(identical=args.identical), args.listings)
        print(f"catalogue {len(brands)} brands / {args.marks} marks; {len(lines)} updates on the broker", flush=True)
        # The run's phases as one bar on stderr (a terminal only); each end-to-end run has its own.
        phases = bar(3 + len(args.parallelism) + (not args.quick) + bool(args.scale_marks), "bench", "phase")
        phases.set_postfix_str("in process")

        sample = lines[: min(len(lines), 50_000)]
        out["core_per_cpu_s"] = round(core_rate(brands, sample))
        reposts = [orjson.dumps({**orjson.loads(x), "event_time": 1}) for x in sample[:20_000]]
        out["fast_path_per_s_per_core"] = round(fast_path_rate(brands, reposts))
        out["naive_per_s_per_core"] = round(naive_rate(brands, lines[:2000]))
        print(f"in-process: scan {out['core_per_cpu_s']}/cpu-s, fast path {out['fast_path_per_s_per_core']}/cpu-s, "
              f"naive {out['naive_per_s_per_core']}/cpu-s", flush=True)
        phases.update(1)
        phases.set_postfix_str("passthrough")
        pt_cpu, pt_wall = passthrough_rate(settings, len(lines))
        out["passthrough_per_s_per_core"], out["passthrough_per_s"] = round(pt_cpu), round(pt_wall)
        print(f"passthrough: {out['passthrough_per_s']}/s wall, {out['passthrough_per_s_per_core']}/cpu-s", flush=True)
        # Flink's own floor on the same topic: a copy job with the scanner job's settings.
        s = job_settings(settings, "copy")
        out["flink_copy"] = copy_rate(s, len(lines))
        out["flink_copy_per_s_per_core"] = out["flink_copy"]["listings_per_cpu_s"]
        print(f"Flink SQL copy: {out['flink_copy']}", flush=True)
        phases.update(1)

        out["e2e"] = []
        for p in args.parallelism:
            s = job_settings(settings, f"p{p}")
            phases.set_postfix_str(f"end to end, parallelism {p}")
            r = e2e(s, p, len(lines))
            out["e2e"].append(r)
            print(f"end to end, parallelism {p}: {r}", flush=True)
            phases.update(1)
        s = job_settings(settings, "fast")
        phases.set_postfix_str("re-posts end to end")
        price_wave = [_repost(x) for x in lines]
        same = identical_wave(price_wave)
        # Then the mix as a marketplace spaces it: each live listing once, twice over (from a copy
        # of the traffic, so the latency run's stream is the one it always read).
        spaced_traffic = copy.deepcopy(traffic)
        spaced = [spaced_traffic.spaced_wave() for _ in range(SPACED_WAVES)]
        out["fast_path_e2e"], out["identical_e2e"], out["current_price_e2e"], *spaced_runs = fast_path_e2e(
            s, [price_wave, same, current_price_wave(same), *spaced], idle_s=IDLE_S)
        out["spaced_mix_e2e"] = spaced_runs
        out["spaced_mix_e2e_per_s_per_core"] = round(sum(r["listings"] for r in spaced_runs)
                                                     / sum(r["cpu_s"] for r in spaced_runs))
        print(f"end to end, the mix spaced (each listing once per wave): {spaced_runs}", flush=True)
        phases.update(1)
        out["fast_path_e2e_per_s_per_core"] = out["fast_path_e2e"]["listings_per_cpu_s"]
        out["identical_e2e_per_s_per_core"] = out["identical_e2e"]["listings_per_cpu_s"]
        print(f"end to end, price-only re-posts: {out['fast_path_e2e']}", flush=True)
        print(f"end to end, identical re-posts (event time only): {out['identical_e2e']}", flush=True)
        out["current_price_e2e_per_s_per_core"] = out["current_price_e2e"]["listings_per_cpu_s"]
        print(f"end to end, price-only re-posts of current content: {out['current_price_e2e']}", flush=True)
        best = max(out["e2e"], key=lambda r: r["listings_per_cpu_s"])
        out["listings_per_s_per_core"] = best["listings_per_cpu_s"]
        sustained = out["e2e"][0]["listings_per_s"]
        if not args.quick:
            s = job_settings(settings, "lat")
            phases.set_postfix_str("latency")
            out["latency_at_80pct"] = latency(s, 0.8 * sustained, args.latency_seconds, traffic)
            phases.update(1)
            out["p99_latency_s"] = out["latency_at_80pct"]["p99_s"]
            print(f"latency at 80% of sustained: {out['latency_at_80pct']}", flush=True)
        if args.scale_marks:
            phases.set_postfix_str(f"matching at {args.scale_marks:,} marks")
            scale(args, out)
            phases.update(1)
        phases.close()
        per_core = out["listings_per_s_per_core"]
        out["cores_for_8b_per_day"] = round(DAILY_UPDATES / 86_400 / per_core, 1)
        # The yardsticks: each end-to-end rate as a share of the Python passthrough's.
        pt = out["passthrough_per_s_per_core"]
        out["of_passthrough"] = {"mix": round(per_core / pt, 3), "flink_copy": round(out["flink_copy_per_s_per_core"] / pt, 3),
                                 "price_only_reposts": round(out["fast_path_e2e_per_s_per_core"] / pt, 3),
                                 "identical_reposts": round(out["identical_e2e_per_s_per_core"] / pt, 3),
                                 "current_price_reposts": round(out["current_price_e2e_per_s_per_core"] / pt, 3),
                                 "spaced_mix": round(out["spaced_mix_e2e_per_s_per_core"] / pt, 3)}
    finally:
        broker.down()
    return out


def write_results(res: dict, results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    rows = _rows(res)
    md = ["| what | listings per CPU-second |", "|---|---:|"] + [f"| {w} | {v:,} |" for w, v in rows]
    md += ["", "| parallelism | listings/s (wall) | listings per CPU-second | cores busy | peak RSS MiB | start-up s |",
           "|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r['parallelism']} | {r['listings_per_s']:,} | {r['listings_per_cpu_s']:,} | {r['cores_busy']} | "
           f"{r['peak_rss_mib']:,} | {r['startup_s']} |" for r in res["e2e"]]
    if "latency_at_80pct" in res:
        lat = res["latency_at_80pct"]
        md += ["", f"Latency at {lat['rate_per_s']:,}/s (80 % of sustained), event time to read_committed arrival: "
                   f"p50 {lat['p50_s']} s, p99 {lat['p99_s']} s ({lat['decisions_timed']} decisions)."]
    if "scale" in res:
        sc = res["scale"]
        md += ["", f"Scan work at {sc['marks_large']:,} marks: {sc['core_large_per_cpu_s']:,}/CPU-s vs "
                   f"{sc['core_small_per_cpu_s']:,} at {sc['marks_small']:,} (ratio {res['throughput_1m_marks_over_1k']})"
                   + (f"; listings flagged {sc['flagged_share_large']:.1%} at {sc['marks_large']:,} marks, "
                      f"{sc['flagged_share_small']:.2%} at {sc['marks_small']:,}." if "flagged_share_large" in sc else ".")]
    if "of_passthrough" in res:
        o = res["of_passthrough"]
        md += ["", f"Share of the Python passthrough's rate: whole mix {o['mix']:.1%}, price-only re-posts "
                   f"{o['price_only_reposts']:.1%}"
                   + (f" (of current content {o['current_price_reposts']:.1%})" if "current_price_reposts" in o else "")
                   + f", identical re-posts {o['identical_reposts']:.1%}"
                   + (f", the mix spaced (each listing once per wave) {o['spaced_mix']:.1%}" if "spaced_mix" in o else "")
                   + (f", a Flink SQL copy of the topic {o['flink_copy']:.1%}." if "flink_copy" in o else ".")]
    if "marginal_us" in res.get("identical_e2e", {}):
        md += ["", "Per record above each job's idle cost: " + ", ".join(
            f"{name} {res[key]['marginal_us']} µs" for name, key in (
                ("Flink SQL copy", "flink_copy"), ("price-only re-post", "fast_path_e2e"),
                ("price-only re-post of current content", "current_price_e2e"),
                ("identical re-post", "identical_e2e")) if key in res) + "."]
    runs = [("the mix", res["e2e"][0])] + [(name, res[key]) for name, key in (
        ("the Flink SQL copy", "flink_copy"), ("price-only re-posts", "fast_path_e2e"),
        ("price-only re-posts of current content", "current_price_e2e"), ("identical re-posts", "identical_e2e"))
        if key in res]
    if all("by_commits" in r for _, r in runs):
        md += ["", "Windows: 10-90 % of each run read by the job's Kafka source. Over the same polls, windows on the "
                   "committed offsets would have read: " + ", ".join(
                       f"{name} {r['by_commits']['listings_per_cpu_s']:,} per CPU-second (commits "
                       f"{r['by_commits']['lag_s']} s behind the reads)" for name, r in runs) + "."]
    md += ["", f"8 billion updates a day = {DAILY_UPDATES / 86_400:,.0f}/s: {res['cores_for_8b_per_day']} cores at the "
               f"end-to-end rate per core.", "", f"Command: `{res['command']}`; seed {res['seed']}; "
               f"machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}, Python {res['machine']['python']}."]
    (results / "latest.md").write_text("\n".join(md) + "\n")
    _plot(res, results / "latest.png")


def _rows(res: dict) -> list[tuple[str, int]]:
    rows = [("Python Kafka passthrough (I/O ceiling)", res["passthrough_per_s_per_core"]),
            ("Flink SQL copy of the topic (Flink's floor)", res.get("flink_copy_per_s_per_core")),   # absent before
            ("zeroscan end to end, exactly-once", res["listings_per_s_per_core"]),
            ("the mix spaced, warm: each listing once per wave", res.get("spaced_mix_e2e_per_s_per_core")),
            ("scan work in process (parse..decide)", res["core_per_cpu_s"]),
            ("identical re-posts end to end", res.get("identical_e2e_per_s_per_core")),   # absent before
            ("price-only re-posts end to end", res["fast_path_e2e_per_s_per_core"]),
            ("price-only re-posts of current content end to end", res.get("current_price_e2e_per_s_per_core")),
            ("unchanged re-post fast path in process", res["fast_path_per_s_per_core"]),
            ("naive: substring test of every mark", res["naive_per_s_per_core"])]
    return [(w, v) for w, v in rows if v is not None]


def _plot(res: dict, path: Path) -> None:
    """Throughput per CPU-second of each measured path (log axis) with the targets, and the
    latency panel (event time to read_committed arrival at 80 % of the sustained rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(res)
    lat = res.get("latency_at_80pct")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[3, 1.1] if lat else [3, 0.01])
    ax = axes[0]
    labels, values = [w for w, _v in rows][::-1], [v for _w, v in rows][::-1]
    colors = ["#2b6cb0" if w.startswith(("zeroscan", "identical re-posts end", "price-only re-posts end"))
              else "#9aa9bd" for w in labels]
    ax.barh(labels, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(1_000, max(values) * 4)
    ax.set_xlabel("listings per CPU-second (log scale; CPU of every process of the measured program)")
    for y, v in enumerate(values):
        ax.text(v * 1.08, y, f"{v:,}", va="center", fontsize=9)
    for x, name, style in ((TARGET_E2E_PER_CPU_S, "target end to end", "--"),
                           (TARGET_FAST_PATH_PER_CPU_S, "target re-post fast path", ":")):
        ax.axvline(x, color="#c53030", linestyle=style, linewidth=1.2)
        ax.text(x * 1.04, len(values) - 0.45, f"{name} ≥ {x:,}", color="#c53030", fontsize=8, va="top")
    ax.set_title(f"Throughput, {res['machine']['cpus']} CPUs, {res['marks']:,} marks", fontsize=11)
    ax.grid(axis="x", which="both", alpha=0.25)
    ax = axes[1]
    if lat:
        ax.bar(["p50", "p99"], [lat["p50_s"], lat["p99_s"]], color=["#9aa9bd", "#2b6cb0"])
        for x, v in enumerate((lat["p50_s"], lat["p99_s"])):
            ax.text(x, v / 2, f"{v} s", ha="center", va="center", fontsize=10, color="white")
        ax.axhline(TARGET_P99_S, color="#c53030", linestyle="--", linewidth=1.2, label=f"target p99 ≤ {TARGET_P99_S:g} s")
        ax.axhline(CHECKPOINT_INTERVAL_S, color="#333", linestyle=":", linewidth=1,
                   label=f"checkpoint interval {CHECKPOINT_INTERVAL_S:g} s (the floor)")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.set_ylim(0, max(TARGET_P99_S, lat["p99_s"]) * 1.4)
        ax.set_ylabel("seconds, event time to read_committed arrival")
        ax.set_title(f"Latency at {lat['rate_per_s']:,} listings/s\n(80 % of the sustained rate)", fontsize=11)
        ax.grid(axis="y", alpha=0.25)
    else:
        ax.set_axis_off()
    command = res["command"].split(";")[0] + ("; scale re-measured with --scale-only" if ";" in res["command"] else "")
    fig.text(0.01, 0.01, f"{command} (seed {res['seed']})", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=400_000)
    ap.add_argument("--marks", type=int, default=1000)
    ap.add_argument("--identical", type=float, default=0.0,
                    help="share of the mix's unchanged re-posts that change nothing but event_time (Mix.identical)")
    ap.add_argument("--parallelism", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--scale-marks", type=int, default=1_000_000, help="0 to skip the large-catalogue run")
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="skip the latency run")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for latest.json/.md/.png")
    ap.add_argument("--scale-only", action="store_true",
                    help="re-measure only the 1k vs --scale-marks comparison into the existing results")
    ap.add_argument("--plot-only", action="store_true", help="redraw latest.png from the existing latest.json")
    args = ap.parse_args(argv)
    if args.plot_only:
        _plot(json.loads((args.results / "latest.json").read_text()), args.results / "latest.png")
        print(f"drew {args.results / 'latest.png'}")
        return 0
    if args.scale_only:
        res = json.loads((args.results / "latest.json").read_text())
        scale(args, res)
        res["command"] += f"; scale re-measured: python -m benchmarks.pipeline_bench --scale-only --scale-marks {args.scale_marks}"
    else:
        res = run(args)
    write_results(res, args.results)
    print((args.results / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
