"""What the cyclic collector's full collections cost the scan, with the catalogue frozen
(`connectors.brand_feed.freeze_long_lived`, what the scan operator does) and without.

    python -m benchmarks.long_lived [--marks 1000 1000000] [--rounds 3] [--passes 5]

Per catalogue size, one process: the catalogue's own traffic (`pipeline_bench.steady_setup`:
every listing matched, memo off, warm word caches), scanned `passes` times per round, the
rounds alternating unfrozen and frozen over the same listings. Reported per mode and round:
listings per CPU-second, the number of full (generation 2) collections and their CPU-seconds,
counted by `gc.callbacks`. The rates are noisy on a shared machine; the collections' count and
cost are not.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from benchmarks.pipeline_bench import RESULTS, _scan_all, steady_setup
from benchmarks.traffic import brand_records


def measure(n_marks: int, rounds: int, passes: int) -> dict:
    cold, measured = steady_setup(brand_records(n_marks))
    full = [0, 0.0]
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started.append(time.process_time())
        else:
            full[0] += 1
            full[1] += time.process_time() - started.pop()

    gc.callbacks.append(on_gc)
    out: dict[str, list[dict]] = {"unfrozen": [], "frozen": []}
    try:
        for _ in range(rounds):
            for mode in ("unfrozen", "frozen"):
                gc.unfreeze()
                if mode == "frozen":
                    gc.freeze()
                full[0], full[1] = 0, 0.0
                t0 = time.process_time()
                for _ in range(passes):
                    _scan_all(cold, measured)
                dt = time.process_time() - t0
                row = {"listings_per_cpu_s": round(passes * len(measured) / dt),
                       "full_collections": full[0], "full_collection_cpu_s": round(full[1], 3),
                       "full_collection_share": round(full[1] / dt, 4)}
                out[mode].append(row)
                print(f"{n_marks:>9,} marks {mode:>8}: {row}", flush=True)
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
    return {"marks": n_marks, "listings_per_round": passes * len(measured), **out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--marks", type=int, nargs="+", default=[1000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args(argv)
    res = {"command": "python -m benchmarks.long_lived " + " ".join(sys.argv[1:] if argv is None else argv),
           "runs": [measure(m, args.rounds, args.passes) for m in args.marks]}
    (RESULTS / "long_lived.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {RESULTS / 'long_lived.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
