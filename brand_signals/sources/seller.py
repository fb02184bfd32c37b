"""The seller's standing for each brand found: raised suspicion when the brand owner confirmed
removals of this seller's listings (it strengthens a presentation already found, like the price
floor, and never presents a brand alone), otherwise a note that the seller is not authorized
(authorized sellers are dropped by decide)."""
from __future__ import annotations

from typing import Sequence

from brand_signals.catalog import Catalog
from brand_signals.records import Evidence, Listing, Signal, SignalKind
from brand_signals.signals import SELLER, Batch, SignalIndex, Stage


def seller_evidence(listing: Listing, found: Sequence[Evidence], presented: frozenset[str] = frozenset(),
                    feedback=None) -> list[Evidence]:
    """One `seller` signal per brand in `found`: suspicion (for a brand the listing's content
    presented, with confirmed removals of the seller for it) or the plain not-authorized note.
    A brand that already carries a positive `seller` signal gets nothing more."""
    out = []
    seller = listing.seller_id
    had = {e.brand_id for e in found for s in e.signals if s.kind is SignalKind.SELLER and s.score > 0}
    score = feedback.policy.seller_suspicion_score if feedback is not None else 0.0
    for brand_id in dict.fromkeys(e.brand_id for e in found if e.brand_id):
        if brand_id in had:
            continue
        n = feedback.seller_removals(seller, brand_id) if feedback is not None and brand_id in presented else 0
        if n and score > 0:
            sig = Signal(SignalKind.SELLER, score, {"seller_id": seller, "confirmed_removals_for_brand": n})
        else:
            sig = Signal(SignalKind.SELLER, 0.0, {"seller_id": seller, "authorized": False})
        out.append(Evidence(brand_id, (sig,)))
    return out


class _Index:
    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        return [seller_evidence(x, found, presented, batch.feedback)
                for x, found, presented in zip(listings, batch.found, batch.presented)]

    def close(self) -> None:
        pass


class SellerSource:
    name = "seller"
    stage = Stage.POLICY
    types = (SELLER,)

    def wants(self, listing: Listing) -> bool:
        return True

    def build(self, catalog: Catalog, previous: SignalIndex | None) -> SignalIndex:
        return previous if isinstance(previous, _Index) else _Index()
