"""What brand owners confirmed: a listing's own confirmed removal, and near-duplicates of
removed listings (rare shared words, a shared image that is not a stock photo). Counts the
sellers each listing image is seen with, which tells stock photos apart."""
from __future__ import annotations

from typing import Sequence

from brand_signals.catalog import Catalog
from brand_signals.records import Evidence, Listing
from brand_signals.signals import BRAND_REMOVAL, FEEDBACK_NEIGHBOR, Batch, SignalIndex, Stage


class _Index:
    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        feedback = batch.feedback
        if feedback is None:
            return [[] for _ in listings]
        out = []
        for listing, fp, seen in zip(listings, batch.fingerprints, batch.images):
            out.append(feedback.removal_evidence(listing, fp))
            if seen:   # after its own evidence: a listing does not make its own photo a stock photo
                feedback.observe_images(listing.seller_id, seen)
        return out

    def close(self) -> None:
        pass


class NeighbourSource:
    name = "feedback"
    stage = Stage.LEARNED
    types = (BRAND_REMOVAL, FEEDBACK_NEIGHBOR)

    def wants(self, listing: Listing) -> bool:
        return True

    def build(self, catalog: Catalog, previous: SignalIndex | None) -> SignalIndex:
        return previous if isinstance(previous, _Index) else _Index()
