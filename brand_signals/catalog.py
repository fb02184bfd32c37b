"""The brand catalogue a scanner instance matches against: the latest version of every brand,
and the indexes derived from it, built whole and swapped in atomically.

`BrandTable` applies brand updates in version order (an older or equal version is refused,
a tombstone withdraws); `Catalog` is an immutable snapshot that the matcher reads, so a
half-built index is never in front of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from brand_signals.records import BrandReference
from brand_signals.wordmarks import WordMarkIndex


class StaleVersionError(ValueError):
    """An update whose version is not newer than the one already applied."""


class BrandTable:
    """Latest brand reference per brand_id, tombstones included (so old versions stay refused)."""

    def __init__(self) -> None:
        self._brands: dict[str, BrandReference] = {}

    def apply(self, brand: BrandReference) -> None:
        current = self._brands.get(brand.brand_id)
        if current is not None and brand.version <= current.version:
            raise StaleVersionError(
                f"brand {brand.brand_id}: version {brand.version} is not newer than {current.version}")
        self._brands[brand.brand_id] = brand

    def forget(self, brand_id: str) -> None:
        self._brands.pop(brand_id, None)

    def live(self) -> list[BrandReference]:
        return [b for b in self._brands.values() if not b.deleted]

    def __len__(self) -> int:
        return len(self._brands)


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    brands: Mapping[str, BrandReference]
    wordmarks: WordMarkIndex

    @classmethod
    def build(cls, brands: Iterable[BrandReference], version: int) -> "Catalog":
        live = {b.brand_id: b for b in brands if not b.deleted}
        return cls(version=version, brands=live, wordmarks=WordMarkIndex.build(live.values()))

    @classmethod
    def empty(cls) -> "Catalog":
        return cls.build((), version=0)
