"""Listing images: logos (geometric verification), word marks read by OCR and copies of
official product photos, all from one pass over each new image (brand_signals.images.image_signals).
Rebuilt only when a brand's images change (`Catalog.images_key`); after other brand updates the
index keeps its per-image results and reads text found in images against the new word marks."""
from __future__ import annotations

from typing import Callable, Sequence

from brand_signals.catalog import Catalog
from brand_signals.records import Evidence, Listing
from brand_signals.signals import IMAGE_COPY, IMAGE_ERROR, LOGO, OCR_TEXT, Batch, SignalIndex, Stage


class _Index:
    def __init__(self, signals, key: bytes):
        self.signals, self.key = signals, key

    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        sig = self.signals
        if hasattr(sig, "verify"):  # fetch a claimed digest of a removed listing's image
            feedback = batch.feedback
            sig.verify = lambda sha: feedback is not None and feedback.has_image(sha)
        found = sig.find(listings, batch.base_dir)
        for n, t in enumerate(getattr(sig, "last_texts", ())):
            batch.texts[n] = t
        for n, d in enumerate(getattr(sig, "last_digests", ())):
            if d:
                batch.digests[n] = d
        return found

    def close(self) -> None:
        self.signals.close()


class ImageSource:
    name = "images"
    stage = Stage.CONTENT
    types = (LOGO, OCR_TEXT, IMAGE_COPY, IMAGE_ERROR)

    def __init__(self, build: Callable[[Catalog], object]):
        """`build(catalog)`: the image signal index of the catalogue's brands (an
        `ImageSignals`, or anything with its `find(listings, base_dir)` and `close()`)."""
        self._build = build

    def wants(self, listing: Listing) -> bool:
        return bool(listing.images)

    def build(self, catalog: Catalog, previous: SignalIndex | None) -> SignalIndex:
        if not isinstance(previous, _Index) or previous.key != catalog.images_key:
            if previous is not None:
                previous.close()
            previous = _Index(self._build(catalog), catalog.images_key)
        if hasattr(previous.signals, "wordmarks"):
            previous.signals.wordmarks = catalog.wordmarks
        return previous
