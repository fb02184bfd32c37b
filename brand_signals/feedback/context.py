"""What the scanner has seen of each listing (`ListingContext`: its seller, the brands it
presented, its fingerprint), so that a later removal is judged on it. `ContextStore` keeps them
in memory for in-process scans; the job judges a removal on the listing's latest update, which
Flink's keyed state holds beside it (`pipelines/steps.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from brand_signals.feedback.fingerprints import Fingerprint


@dataclass(frozen=True, slots=True)
class ListingContext:
    """What the scanner has seen of one listing: enough to judge a removal and to index it."""

    listing_id: str
    seller_id: str
    presented: frozenset[str]
    fingerprint: Fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"listing_id": self.listing_id, "seller_id": self.seller_id, "presented": sorted(self.presented),
                "fingerprint": self.fingerprint.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ListingContext":
        return cls(d["listing_id"], d["seller_id"], frozenset(d["presented"]), Fingerprint.from_json(d["fingerprint"]))


class ContextStore:
    """What the scanner has seen, per listing, in memory. Every listing is remembered, also one that presented nothing (so a
    removal of it is refused, not held), and the presented brands accumulate: a removal is
    judged on what the scanner has ever seen."""

    def __init__(self) -> None:
        self._d: dict[str, ListingContext] = {}

    def get(self, listing_id: str) -> ListingContext | None:
        return self._d.get(listing_id)

    def remember(self, ctx: ListingContext) -> None:
        old = self._d.get(ctx.listing_id)
        self._d[ctx.listing_id] = merge_context(old, ctx)

    def remember_many(self, ctxs: Sequence[ListingContext]) -> None:
        """A batch's contexts, in order (the store behind may write them in one go)."""
        for ctx in ctxs:
            self.remember(ctx)

    def close(self) -> None:
        pass


def merge_context(old: ListingContext | None, new: ListingContext) -> ListingContext:
    """Presented brands accumulate; the fingerprint is the latest one that presented a brand.
    `old` itself when nothing changes (most updates are re-posts)."""
    if old is None:
        return new
    fp = new.fingerprint if new.presented or not old.presented else old.fingerprint
    if new.seller_id == old.seller_id and new.presented <= old.presented and fp == old.fingerprint:
        return old
    return ListingContext(new.listing_id, new.seller_id, old.presented | new.presented, fp)
