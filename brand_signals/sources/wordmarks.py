"""Word marks in a listing's fields (title, brand field, description, bullet points): the
catalogue's WordMarkIndex, built once per catalogue version by `Catalog.build` and shared with
the image source (text read from images)."""
from __future__ import annotations

from typing import Sequence

from brand_signals.catalog import Catalog
from brand_signals.records import Evidence, Listing
from brand_signals.signals import BRAND_FIELD, TRADEMARK_TEXT, Batch, SignalIndex, Stage
from brand_signals.text.wordmarks import WordMarkIndex


class _Index:
    def __init__(self, marks: WordMarkIndex):
        self.marks = marks

    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        return self.marks.match_many(listings)

    def close(self) -> None:
        pass


class WordMarkSource:
    name = "wordmarks"
    stage = Stage.CONTENT
    types = (TRADEMARK_TEXT, BRAND_FIELD)

    def wants(self, listing: Listing) -> bool:
        return True

    def build(self, catalog: Catalog, previous: SignalIndex | None) -> SignalIndex:
        if isinstance(previous, _Index) and previous.marks is catalog.wordmarks:
            return previous
        return _Index(catalog.wordmarks)
