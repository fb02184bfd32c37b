"""New-listing rate in process with the per-listing context store (what each listing presented,
absences too) written per listing vs once per batch.

    .venv/bin/python -m benchmarks.context_writes [--listings 60000]

The scan operator's batch step (`pipelines.steps.scan_records`: parse, validate, match, decide,
remember the context) over new listings only (the throughput benchmark's catalogue and titles,
250 brands, 1,000 marks), in batches of 2,000, with a feedback state, and the context store:
none; in memory; RocksDB with one read and one write per listing (the previous code); RocksDB
with one multi-get and one write batch per batch (`RocksContextStore.remember_many`). Each
store is fresh (in a temporary folder). Listings per CPU-second of this process (RocksDB's
background threads included). Writes benchmarks/results/context_writes.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.traffic import Mix, Traffic, brand_records
from brand_signals.catalog import Catalog
from brand_signals.contract import parse_brand
from brand_signals.feedback import ContextStore, FeedbackState, merge_context
from brand_signals.scanner import Scanner
from connectors.context_store import RECENT_ENTRIES, RocksContextStore
from connectors.serde import Origin
from pipelines.steps import ScanContext, scan_records
from zeroscan.settings import ROOT

BATCH = 2000


class PerListingStore(RocksContextStore):
    """The previous write path: a store read and a store write for every listing."""

    def remember_many(self, ctxs) -> None:
        for ctx in ctxs:
            old = self.get(ctx.listing_id)
            merged = merge_context(old, ctx)
            if merged != old:
                self._db[ctx.listing_id.encode()] = orjson.dumps(merged.to_json())
            self._recent[ctx.listing_id] = merged
            self._recent.move_to_end(ctx.listing_id)
            if len(self._recent) > RECENT_ENTRIES:
                self._recent.popitem(last=False)


def rate(catalog: Catalog, lines: list[bytes], contexts) -> float:
    ctx = ScanContext(catalog, Scanner("bench"), FeedbackState(), contexts)
    origins = [Origin("listings", 0, 0)] * BATCH
    t0 = time.process_time()
    for i in range(0, len(lines), BATCH):
        chunk = lines[i:i + BATCH]
        scan_records(chunk, origins[:len(chunk)], ctx, 0)
    return len(lines) / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    brands = brand_records(1000)
    catalog = Catalog.build([parse_brand(orjson.dumps(b)) for b in brands], version=1)
    lines = list(Traffic(brands, Mix(unchanged=0.0, edited=0.0, new=1.0)).lines(args.listings))
    out: dict[str, list[int]] = {}
    for _ in range(args.rounds):   # interleaved, so machine load falls on every variant alike
        for name in ("none", "memory", "rocksdb_per_listing", "rocksdb_per_batch"):
            with tempfile.TemporaryDirectory() as d:
                store = {"none": lambda: None, "memory": ContextStore,
                         "rocksdb_per_listing": lambda: PerListingStore(Path(d)),
                         "rocksdb_per_batch": lambda: RocksContextStore(Path(d))}[name]()
                try:
                    out.setdefault(name, []).append(round(rate(catalog, lines, store)))
                finally:
                    if store is not None:
                        store.close()
            print(name, out[name][-1], flush=True)
    res = {"listings": args.listings, "new_listings_per_cpu_s": {k: max(v) for k, v in out.items()}, "runs": out}
    path = ROOT / "benchmarks" / "results" / "context_writes.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
