"""Per-listing scan context ("what the scanner has seen") in an embedded RocksDB store, one per
scan subtask. Listings reach the same subtask every time (the job hashes them by listing_id
before the scan operator), so the store is local. It is a monotone cache: replaying records
after a restart re-applies the same facts; on rescaling, contexts of moved listings are rebuilt
as those listings are re-posted (until then their removals are held for review)."""
from __future__ import annotations

from pathlib import Path

import orjson
from rocksdict import Options, Rdict

from brand_signals.feedback import ListingContext, merge_context


class RocksContextStore:
    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), options=opts)

    def get(self, listing_id: str) -> ListingContext | None:
        raw = self._db.get(listing_id.encode())
        return ListingContext.from_json(orjson.loads(raw)) if raw is not None else None

    def remember(self, ctx: ListingContext) -> None:
        old = self.get(ctx.listing_id)
        merged = merge_context(old, ctx)
        if merged != old:  # re-posts of unchanged content write nothing
            self._db[ctx.listing_id.encode()] = orjson.dumps(merged.to_json())

    def close(self) -> None:
        self._db.close()
