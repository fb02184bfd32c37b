"""The scan worker's young collections side by side: the scan operator's work per listing
(`pipeline_bench`'s steady measure: warm word caches, no content memo, every listing matched)
with the cyclic collector's young threshold at CPython's 700 and at larger counts
(`connectors.brand_feed.space_young_collections`, ZEROSCAN_GC_YOUNG), alternating pass by pass
in one process per catalogue size (in reverse order every other round), with the time the collector itself took (gc.callbacks).

    .venv/bin/python -m benchmarks.gc_young [--marks 1000 1000000] [--rounds 3] [--results benchmarks/results/gc_young.json]

Prints one line per catalogue size; writes the JSON if asked.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

THRESHOLDS = (700, 10_000, 50_000, 200_000)


def measure(marks: int, rounds: int) -> dict:
    from benchmarks.pipeline_bench import ScanContext, Scanner, _scan_all, steady_setup
    from benchmarks.traffic import brand_records

    ctx, lines = steady_setup(brand_records(marks))
    spent = [0.0, 0.0]

    def timer(phase: str, _info: dict) -> None:
        if phase == "start":
            spent[1] = time.process_time()
        else:
            spent[0] += time.process_time() - spent[1]

    before = gc.get_threshold()
    out: dict[int, dict[str, list[float]]] = {t: {"us": [], "gc_us": []} for t in THRESHOLDS}
    gc.callbacks.append(timer)
    try:
        for r in range(rounds):
            for t in THRESHOLDS if r % 2 == 0 else THRESHOLDS[::-1]:   # each order half the rounds
                gc.set_threshold(t, *before[1:])
                gc.collect()
                spent[0] = 0.0
                cpu = _scan_all(ScanContext(ctx.catalog, Scanner("bench", memo_entries=0)), lines)
                out[t]["us"].append(round(cpu / len(lines) * 1e6, 1))
                out[t]["gc_us"].append(round(spent[0] / len(lines) * 1e6, 2))
    finally:
        gc.callbacks.remove(timer)
        gc.set_threshold(*before)
    base = statistics.median(out[700]["us"])
    return {"marks": marks, "listings": len(lines),
            "per_threshold": {str(t): {**v, "median_us": statistics.median(v["us"]),
                                       "speedup_vs_700": round(base / statistics.median(v["us"]), 3)}
                              for t, v in out.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--marks", type=int, nargs="+", default=[1000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args(argv)
    res = []
    for m in args.marks:
        r = measure(m, args.rounds)
        print(json.dumps(r), flush=True)
        res.append(r)
    if args.results:
        args.results.write_text(json.dumps({"command": "python -m benchmarks.gc_young " + " ".join(sys.argv[1:] if argv is None else argv),
                                            "results": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
