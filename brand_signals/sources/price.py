"""The brand's price floor: a price under it is not presentation by itself; it raises
confidence in a presentation already found (genuine goods are not sold below min_price)."""
from __future__ import annotations

from typing import Mapping, Sequence

from brand_signals.catalog import Catalog
from brand_signals.records import BrandReference, Evidence, Listing, Signal, SignalKind
from brand_signals.signals import PRICE, Batch, SignalIndex, Stage

# What a price under the floor adds (noisy-OR) to a presentation found for that brand.
PRICE_BOOST = 0.5


def price_evidence(listing: Listing, found: Sequence[Evidence], brands: Mapping[str, BrandReference]) -> list[Evidence]:
    """A `price` signal for each brand in `found` whose floor the listing's price is under."""
    price = listing.price
    if price is None:
        return []
    out = []
    for brand_id in dict.fromkeys(e.brand_id for e in found if e.brand_id):
        brand = brands.get(brand_id)
        floor = brand.min_price if brand is not None else None
        if floor is not None and price.currency == floor.currency and price.amount < floor.amount:
            out.append(Evidence(brand_id, (Signal(SignalKind.PRICE, PRICE_BOOST, {
                "amount": price.amount, "currency": price.currency, "min_price": floor.amount}),)))
    return out


class _Index:
    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        brands = batch.catalog.brands
        return [price_evidence(x, found, brands) for x, found in zip(listings, batch.found)]

    def close(self) -> None:
        pass


class PriceFloorSource:
    name = "price"
    stage = Stage.POLICY
    types = (PRICE,)

    def wants(self, listing: Listing) -> bool:
        return listing.price is not None

    def build(self, catalog: Catalog, previous: SignalIndex | None) -> SignalIndex:
        return previous if isinstance(previous, _Index) else _Index()
