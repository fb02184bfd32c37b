"""The re-post fast path while one brand updates every second, in process.

    .venv/bin/python -m benchmarks.brand_churn [--listings 400000] [--marks 1000]

The scan operator's batch step (parse, validate, memo, match, decide; `pipelines.steps`) over
the throughput benchmark's seeded traffic mix (80 % unchanged re-posts, 15 % text edits, 5 % new
listings, 250 brands with 1,000 marks), in batches of 2,000, text only. Four runs on the same
traffic: no brand updates; one brand's marks changing every second (a mark added, then removed
again, as an owner editing and saving); one brand's policy changing every second (its price
floor); and the marks changing every second with the old behaviour (every update empties the
memo, as a catalogue built without its predecessor does). "Every second" is a second of this
process's CPU time, so a busy machine does not change the update rate per listing scanned; the
catalogue rebuild of each update is counted in the CPU time. Reports, over the listings after
the first quarter (warm-up): the share answered from the memo (the fast path), the share of
those re-checked against the changed brand, and listings per CPU-second. Writes
benchmarks/results/brand_churn.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import orjson

from benchmarks.traffic import Traffic, brand_records
from brand_signals.catalog import Catalog
from brand_signals.contract import parse_brand
from brand_signals.records import Money
from brand_signals.scanner import Scanner
from connectors.serde import Origin
from pipelines.steps import ScanContext, scan_records
from zeroscan.settings import ROOT

BATCH = 2000
UPDATE_EVERY_CPU_S = 1.0


def run(mode: str, brands: list[dict], lines: list[bytes]) -> dict:
    table = {b["brand_id"]: parse_brand(orjson.dumps(b)) for b in brands}
    churn = sorted(table)[len(table) // 2]
    catalog = Catalog.build(table.values(), version=1)
    scanner = Scanner("bench")
    origins = [Origin("listings", 0, 0)] * BATCH
    warm = len(lines) // 4
    updates = 0
    hits0 = misses0 = rechecks0 = 0
    cpu0 = t0 = time.process_time()
    last_update = t0
    for i in range(0, len(lines), BATCH):
        if i == warm:
            hits0, misses0, rechecks0 = scanner.memo_hits, scanner.memo_misses, scanner.memo_rechecks
            cpu0, updates0 = time.process_time(), updates
        if mode != "none" and time.process_time() - last_update >= UPDATE_EVERY_CPU_S:
            b = table[churn]
            if mode == "policy":
                floor = Money(1.0 + updates % 2, "USD")
                b = dataclasses.replace(b, min_price=floor, version=b.version + 1)
            else:   # an extra mark added, then taken out again
                base = b.trademarks[:4]
                marks = base + ((base[0] + "on",) if updates % 2 == 0 else ())
                b = dataclasses.replace(b, trademarks=marks, version=b.version + 1)
            table[churn] = b
            previous = None if mode == "marks-old" else catalog
            catalog = Catalog.build(table.values(), version=catalog.version + 1, previous=previous)
            updates += 1
            last_update = time.process_time()
        chunk = lines[i:i + BATCH]
        scan_records(chunk, origins[:len(chunk)], ScanContext(catalog, scanner), 0)
    cpu = time.process_time() - cpu0
    hits, misses = scanner.memo_hits - hits0, scanner.memo_misses - misses0
    n = len(lines) - warm
    return {"mode": mode, "listings_measured": n, "brand_updates_measured": updates - updates0,
            "fast_path_share": round(hits / max(1, hits + misses), 4),
            "rechecked_share_of_hits": round((scanner.memo_rechecks - rechecks0) / max(1, hits), 4),
            "listings_per_cpu_s": round(n / cpu), "cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=400_000)
    ap.add_argument("--marks", type=int, default=1000)
    args = ap.parse_args(argv)
    brands = brand_records(args.marks)
    traffic = Traffic(brands)
    traffic.warm(2000)
    lines = list(traffic.lines(args.listings))
    out = {"listings": args.listings, "marks": args.marks, "brands": len(brands),
           "update_every_cpu_s": UPDATE_EVERY_CPU_S, "runs": []}
    for mode in ("none", "marks", "policy", "marks-old"):
        r = run(mode, brands, lines)
        print(json.dumps(r), flush=True)
        out["runs"].append(r)
    path = ROOT / "benchmarks" / "results" / "brand_churn.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
