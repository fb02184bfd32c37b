"""Per-listing scan context ("what the scanner has seen") in an embedded RocksDB store, one per
scan worker. Listings reach the same subtask every time (the job hashes them by listing_id
before the scan operator), so the store is local. Table functions are not told their subtask
index, so each worker claims the first free numbered slot folder with an exclusive lock.

Every scanned listing is remembered, also one that presented nothing (a removal of it is then
refused, not held); the latest contexts are kept in memory too, so an unchanged re-post costs a
dict look-up, not a read of the store. A batch's contexts are read with one multi-get and
written with one write batch (`remember_many`), not one store call per listing.

It is a monotone cache: replaying records after a restart re-applies the same facts. With one
worker (the embedded default) it is exact. With several, a restart may hand a worker another
slot than before (or a rescale may move listings); contexts of those listings are rebuilt as
the listings are re-posted, and until then removals of them are held for review, not lost."""
from __future__ import annotations

import fcntl
import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import orjson
from rocksdict import Options, Rdict, WriteBatch

from brand_signals.feedback import ListingContext, merge_context


# More slots than any worker count on one machine; a worker that finds all taken fails loudly.
MAX_SLOTS = 1024
# Latest contexts kept in memory per worker (~300 B each): the re-post horizon of a partition.
RECENT_ENTRIES = 100_000


def claim_slot(root: Path) -> tuple[Path, int]:
    """The first numbered slot folder under `root` that no other live process holds."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(MAX_SLOTS):
        fd = os.open(root / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return root / f"slot-{i}", fd
    raise RuntimeError(f"all {MAX_SLOTS} context store slots under {root} are taken")


class RocksContextStore:
    def __init__(self, root: Path):
        path, self._lock_fd = claim_slot(root)
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), options=opts)
        self._recent: OrderedDict[str, ListingContext] = OrderedDict()

    def get(self, listing_id: str) -> ListingContext | None:
        hit = self._recent.get(listing_id)
        if hit is not None:
            return hit
        raw = self._db.get(listing_id.encode())
        return ListingContext.from_json(orjson.loads(raw)) if raw is not None else None

    def remember(self, ctx: ListingContext) -> None:
        self.remember_many((ctx,))

    def remember_many(self, ctxs: Sequence[ListingContext]) -> None:
        """A batch's contexts: those not in memory read with one multi-get, the changed ones
        written in one write batch (re-posts of unchanged content write nothing)."""
        recent = self._recent
        known: dict[str, ListingContext | None] = {}
        missing = [c.listing_id for c in ctxs if c.listing_id not in recent]
        if missing:
            missing = list(dict.fromkeys(missing))
            for lid, raw in zip(missing, self._db.get([m.encode() for m in missing])):
                known[lid] = ListingContext.from_json(orjson.loads(raw)) if raw is not None else None
        changed: dict[str, ListingContext] = {}
        for ctx in ctxs:
            lid = ctx.listing_id
            old = changed.get(lid) or recent.get(lid) or known.get(lid)
            merged = merge_context(old, ctx)
            if merged != old:
                changed[lid] = merged
            recent[lid] = merged
            recent.move_to_end(lid)
        if changed:
            wb = WriteBatch(raw_mode=True)
            for lid, merged in changed.items():
                wb.put(lid.encode(), orjson.dumps(merged.to_json()))
            self._db.write(wb)
        while len(recent) > RECENT_ENTRIES:
            recent.popitem(last=False)

    def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)
