"""The brand catalogue a scanner instance matches against: the latest version of every brand,
and the indexes derived from it, built whole and swapped in atomically.

`BrandTable` applies brand updates in version order (an older or equal version is refused,
a tombstone withdraws); `Catalog` is an immutable snapshot that the matcher reads, so a
half-built index is never in front of it.

A catalogue built from the previous one (`Catalog.build(..., previous=cat)`) also says what
changed: per brand, the catalogue version at which what its evidence depends on (its word
marks and categories) last changed, and an index of that brand's marks old and new. A memo
entry made at an older version is then still valid when no brand it shows changed and none of
the brands that changed could involve the listing at all (`WordMarkIndex.touches`): a
re-check against the changed brand alone, not a match against the whole catalogue. An update
that changes only policy (enforcement, authorized sellers, price floor, name) changes no
evidence at all. `images_key` changes only when a brand's images do.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from brand_signals.text import textnorm as tn
from brand_signals.records import BrandReference
from brand_signals.text.wordmarks import Mark, WordMarkIndex

# A memo entry is re-checked against each brand that changed since it was made when at most
# this many did; beyond that it is matched again against the whole catalogue (a bulk update).
RECHECK_MAX_BRANDS = 8
# Marks a changed brand's re-check index keeps over its successive versions; beyond that it
# starts again from its last two versions (memo entries older than those are matched again).
RECHECK_MAX_MARKS = 64


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

    def versions(self) -> dict[str, int]:
        """The latest version applied per brand, withdrawn ones included."""
        return {bid: b.version for bid, b in self._brands.items()}

    def __len__(self) -> int:
        return len(self._brands)


@dataclass(frozen=True, slots=True)
class BrandChange:
    """A brand whose matching content changed: at catalogue `version` last, and `probe` holds
    its marks of every version it had since catalogue version `since` (old and new ones), so
    it answers for memo entries made at `since` or later."""

    version: int
    since: int
    marks: frozenset[str]
    probe: WordMarkIndex


_NOTHING: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def matching_content(b: BrandReference) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a brand's text evidence depends on: its word marks and categories."""
    return (tuple(b.trademarks), tuple(b.categories))


def images_key(brands: Iterable[BrandReference]) -> bytes:
    """Digest of every brand's images; a reference without a sha256 ties it to the brand's
    version (the bytes behind its uri may change)."""
    h = hashlib.blake2b(digest_size=16)
    for b in sorted(brands, key=lambda b: b.brand_id):
        refs = [("l", r.uri, r.sha256 or "") for r in b.logos] + [("p", r.uri, r.sha256 or "") for r in b.product_images]
        if not refs:
            continue
        h.update(f"\x1e{b.brand_id}".encode())
        if any(not sha for _, _, sha in refs):
            h.update(f"\x1f{b.version}".encode())
        for kind, uri, sha in refs:
            h.update(f"\x1f{kind}|{uri}|{sha}".encode("utf-8", "surrogatepass"))
    return h.digest()


def _probe_index(brand_id: str, marks: Iterable[str], ref: BrandReference | None) -> WordMarkIndex:
    out, seen = [], set()
    for text in sorted(marks):
        norm = tn.normalize(text)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(Mark(brand_id, text, norm))
    return WordMarkIndex({brand_id: ref or BrandReference(brand_id, 0)}, tuple(out))


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    brands: Mapping[str, BrandReference]
    wordmarks: WordMarkIndex
    images_key: bytes = b""
    # Memo entries made before `text_floor` are stale whatever changed (a catalogue of another
    # lineage, or a change of the index's shape); entries of listings with images made before
    # `image_floor` are stale (a brand's images changed).
    text_floor: int = 0
    image_floor: int = 0
    matching: Mapping[str, tuple] = field(default_factory=dict)
    changes: Mapping[str, BrandChange] = field(default_factory=dict)
    # `changes`, the latest first (a memo entry reads only those newer than itself)
    recent: tuple[tuple[str, BrandChange], ...] = ()
    # The latest version the catalogue's feed applied per brand, withdrawn ones included (a
    # rescan for a brand change waits until its catalogue has it); live brands' own by default.
    versions: Mapping[str, int] = field(default_factory=dict)

    def has_version(self, brand_id: str, version: int) -> bool:
        """Whether this catalogue includes the brand's change to `version` (or a later one)."""
        seen = self.versions.get(brand_id)
        if seen is None:
            b = self.brands.get(brand_id)
            seen = b.version if b is not None else 0
        return seen >= version

    @classmethod
    def build(cls, brands: Iterable[BrandReference], version: int, previous: "Catalog | None" = None) -> "Catalog":
        live = {b.brand_id: b for b in brands if not b.deleted}
        matching = {bid: matching_content(b) for bid, b in live.items()}
        ikey = images_key(live.values())
        if previous is None or previous.version >= version or not previous.brands:
            return cls(version=version, brands=live, wordmarks=WordMarkIndex.build(live.values()), images_key=ikey,
                       text_floor=version, image_floor=version, matching=matching)
        changed = sorted(bid for bid in matching.keys() | previous.matching.keys()
                         if matching.get(bid) != previous.matching.get(bid))
        if len(changed) > RECHECK_MAX_BRANDS:   # a bulk update: every older entry is matched again
            return cls(version=version, brands=live, wordmarks=WordMarkIndex.build(live.values()), images_key=ikey,
                       text_floor=version, image_floor=version if ikey != previous.images_key else previous.image_floor,
                       matching=matching)
        wordmarks = WordMarkIndex.build(live.values()) if changed else previous.wordmarks
        text_floor = previous.text_floor
        if wordmarks.max_tokens != previous.wordmarks.max_tokens:
            text_floor = version   # which tokens are read for typos depends on the longest mark
        image_floor = previous.image_floor if ikey == previous.images_key else version
        changes = dict(previous.changes)
        for bid in changed:
            old = previous.matching.get(bid, _NOTHING)[0]
            new = matching.get(bid, _NOTHING)[0]
            prev = changes.get(bid)
            if prev is not None and len(prev.marks | set(old) | set(new)) <= RECHECK_MAX_MARKS:
                marks, since = prev.marks | set(old) | set(new), prev.since
            else:
                marks, since = frozenset(old) | frozenset(new), (prev.version if prev is not None else 0)
            marks = frozenset(marks)
            # the same marks as before (an owner toggling one): the same index, its typo cache warm
            probe = (prev.probe if prev is not None and prev.marks == marks
                     else _probe_index(bid, marks, live.get(bid) or previous.brands.get(bid)))
            changes[bid] = BrandChange(version, since, marks, probe)
        recent = tuple(sorted(changes.items(), key=lambda kv: -kv[1].version)) if changed else previous.recent
        return cls(version=version, brands=live, wordmarks=wordmarks, images_key=ikey, text_floor=text_floor,
                   image_floor=image_floor, matching=matching, changes=changes, recent=recent)

    @classmethod
    def empty(cls) -> "Catalog":
        return cls.build((), version=0)

    def still_valid(self, made_at: int, shown: Iterable[str], texts: Iterable[str], has_images: bool) -> bool:
        """Whether evidence found at catalogue version `made_at` for a listing with these texts
        (its fields, and text read from its images), showing brands `shown`, is the evidence
        this catalogue would find."""
        if made_at < self.text_floor or made_at > self.version or (has_images and made_at < self.image_floor):
            return False
        todo = []
        for bid, change in self.recent:
            if change.version <= made_at:
                break
            if len(todo) == RECHECK_MAX_BRANDS or change.since > made_at:
                return False
            todo.append((bid, change))
        if not todo:
            return True
        shown = set(shown)
        if any(bid in shown for bid, _ in todo):
            return False
        texts = tuple(texts)
        return not any(change.probe.touches(texts) for _, change in todo)
