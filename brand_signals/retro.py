"""Retroactive matching as plain Python (no Kafka): what a brand change asks of the listings
already live, the cheap pre-filter that picks the few that could be affected, and the re-check
requests (`rescan` records) the scanner job decides like listings.

A brand change is compared with the brand's previous published version (`brand_delta`):
- it gained matching content (a new brand, new word marks, new logos or product photos, other
  categories): the live listings are pre-filtered against that brand ONLY: a word-mark index of
  its new marks (`WordMarkIndex.touches`, the conservative test the scanner's memo uses: any
  text these marks could take part in matching) and the sha256 digests of its new images;
- any change at all (a withdrawal, a newly authorised seller, a lower enforcement, a removed
  mark): the brand's open flags (from `listing-status`) are re-checked, a newly authorised
  seller's only when that is all that changed.

The job re-scans each candidate's latest content against its whole catalogue (the listing's
decision is then the one a re-post would get), and its per-listing transition state turns the
result into a decision, nothing (unchanged), or a `clear`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import orjson

from brand_signals.text import textnorm as tn
from brand_signals.records import BrandReference
from brand_signals.text.wordmarks import Mark, WordMarkIndex

# Reasons carried by a rescan (and into the `clear` it may yield).
REASON_APPROVED = "brand approved"
REASON_GAINED = "brand gained marks or images"
REASON_WITHDRAWN = "brand withdrawn"
REASON_AUTHORISED = "seller authorised"
REASON_UPDATED = "brand updated"
# A rescan is a listing record (up to the contract's 1 MiB) in a small envelope.
RESCAN_ENVELOPE_BYTES = 64 << 10
# Field texts whose pre-filter answer is kept while one change is handled.
TEXT_CACHE_ENTRIES = 200_000
_HEADER = struct.Struct(">iq")   # partition, offset of the listing record a stored content came from


@dataclass(frozen=True, slots=True)
class BrandDelta:
    """What one published brand change asks of the live listings and the open flags."""

    brand_id: str
    version: int
    reason: str
    # marks to pre-filter live listings with (empty: no live scan for text)
    probe_marks: tuple[str, ...] = ()
    # sha256 of new logos and product photos (a listing image with the same digest is a candidate)
    probe_images: frozenset[str] = frozenset()
    # re-check the brand's open flags; `only_sellers`: only those of these sellers
    recheck_open: bool = True
    only_sellers: frozenset[str] | None = None

    @property
    def scans_live(self) -> bool:
        return bool(self.probe_marks or self.probe_images)


def _digests(b: BrandReference) -> frozenset[str]:
    return frozenset(i.sha256 for i in (*b.logos, *b.product_images) if i.sha256)


def _image_refs(b: BrandReference) -> frozenset[tuple[str, str]]:
    return frozenset((i.uri, i.sha256 or "") for i in (*b.logos, *b.product_images))


def brand_delta(old: BrandReference | None, new: BrandReference) -> BrandDelta | None:
    """The delta from the brand's previous published version `old` (None or withdrawn: not
    live before) to `new`; None when `new` is not newer."""
    if old is not None and new.version <= old.version:
        return None
    was_live = old is not None and not old.deleted
    if new.deleted:
        return BrandDelta(new.brand_id, new.version, REASON_WITHDRAWN) if was_live else None
    if not was_live:
        return BrandDelta(new.brand_id, new.version, REASON_APPROVED, tuple(new.trademarks), _digests(new),
                          recheck_open=old is not None)
    assert old is not None
    if tuple(new.categories) != tuple(old.categories):
        marks = tuple(new.trademarks)   # category scoring of every mark of the brand may change
    else:
        marks = tuple(m for m in new.trademarks if m not in set(old.trademarks))
    images = _digests(new) - _digests(old)
    gained = bool(marks or images or (_image_refs(new) - _image_refs(old)))
    sellers = new.authorized_sellers - old.authorized_sellers
    policy_same = (new.enforcement == old.enforcement and new.min_price == old.min_price
                   and set(new.trademarks) >= set(old.trademarks) and _image_refs(new) >= _image_refs(old)
                   and old.authorized_sellers <= new.authorized_sellers and new.categories == old.categories)
    if gained:
        reason = REASON_GAINED
    elif sellers and policy_same:
        return BrandDelta(new.brand_id, new.version, REASON_AUTHORISED, only_sellers=frozenset(sellers))
    else:
        reason = REASON_AUTHORISED if sellers else REASON_UPDATED
    return BrandDelta(new.brand_id, new.version, reason, marks, images)


def probe_index(brand: BrandReference, marks: Iterable[str]) -> WordMarkIndex:
    """A word-mark index of these marks of this one brand."""
    out, seen = [], set()
    for text in marks:
        norm = tn.normalize(text)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(Mark(brand.brand_id, text, norm))
    return WordMarkIndex({brand.brand_id: brand}, tuple(out))


# --- the stored content of a live listing ------------------------------------------------

def pack_content(partition: int, offset: int, raw: bytes) -> bytes:
    """A live listing's latest record as stored: where it was read, then its bytes."""
    return _HEADER.pack(partition, offset) + raw


def unpack_content(value: bytes) -> tuple[int, int, bytes]:
    p, o = _HEADER.unpack_from(value)
    return p, o, value[_HEADER.size:]


def live_listing_id(raw: bytes) -> tuple[str | None, bool]:
    """(listing_id, still live) of a listing record; (None, False) for one that is not a JSON
    object with a string listing_id (the job dead-letters it; nothing to keep)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(obj, dict):
        return None, False
    lid = obj.get("listing_id")
    if not isinstance(lid, str) or not lid:
        return None, False
    return lid, obj.get("op", "upsert") != "delete"


def _texts(obj: dict) -> tuple[str, ...]:
    out = []
    for f in ("title", "brand", "description"):
        v = obj.get(f)
        if isinstance(v, str) and v:
            out.append(v)
    bullets = obj.get("bullet_points")
    if isinstance(bullets, list):
        joined = " \n ".join(b for b in bullets if isinstance(b, str))
        if joined:
            out.append(joined)
    return tuple(out)


def _image_digests(obj: dict) -> Iterator[str]:
    images = obj.get("images")
    if isinstance(images, list):
        for im in images:
            if isinstance(im, dict) and isinstance(im.get("sha256"), str):
                yield im["sha256"]


class PreFilter:
    """Picks the live listings a brand change could affect, from their raw records: cheap (one
    JSON decode and the one-brand index's `touches`), conservative (a listing it skips is
    decided the same with and without the change's marks), and for a batch at a time."""

    def __init__(self, brand: BrandReference, delta: BrandDelta, cache_entries: int = TEXT_CACHE_ENTRIES):
        self.index = probe_index(brand, delta.probe_marks) if delta.probe_marks else None
        self.images = delta.probe_images
        # `touches` answers for each text on its own: a field text seen before (the same title
        # from many sellers, a shared description) costs a dict look-up
        self._seen: dict[str, bool] = {}
        self._cache_entries = cache_entries

    @classmethod
    def union(cls, changes: Iterable[tuple[BrandReference, BrandDelta]]) -> "PreFilter":
        """One filter for several changes: keeps what any of theirs would keep (an index of
        all their probe marks answers `touches` for each one's marks, and more)."""
        out = cls.__new__(cls)
        marks, brands, images, seen = [], {}, set(), set()
        for brand, delta in changes:
            brands[brand.brand_id] = brand
            images |= delta.probe_images
            for text in delta.probe_marks:
                norm = tn.normalize(text)
                if norm and (brand.brand_id, norm) not in seen:
                    seen.add((brand.brand_id, norm))
                    marks.append(Mark(brand.brand_id, text, norm))
        out.index = WordMarkIndex(brands, tuple(marks)) if marks else None
        out.images = frozenset(images)
        out._seen, out._cache_entries = {}, TEXT_CACHE_ENTRIES
        return out

    def _touches(self, text: str) -> bool:
        hit = self._seen.get(text)
        if hit is None:
            hit = self.index.touches((text,))
            if len(self._seen) >= self._cache_entries:
                self._seen.clear()
            self._seen[text] = hit
        return hit

    def candidate(self, raw: bytes) -> bool:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(obj, dict) or obj.get("op") == "delete":
            return False
        if self.images and any(d in self.images for d in _image_digests(obj)):
            return True
        return self.index is not None and any(self._touches(t) for t in _texts(obj))

    def select(self, raws: Iterable[bytes]) -> list[int]:
        """Indices of the candidates in `raws`."""
        return [i for i, raw in enumerate(raws) if self.candidate(raw)]


_POOL_FILTER: PreFilter | None = None


def _pool_init(pre: PreFilter) -> None:
    global _POOL_FILTER
    _POOL_FILTER = pre


def _pool_select(raws: list[bytes]) -> list[int]:
    assert _POOL_FILTER is not None
    return _POOL_FILTER.select(raws)


def select_batches(pre: PreFilter, batches: Iterable[list[bytes]], processes: int = 1) -> Iterator[list[int]]:
    """`pre.select` over batches, in order; with processes > 1 in that many worker processes
    (spawned: the caller may hold Kafka clients' threads), each given the filter once."""
    if processes <= 1:
        for b in batches:
            yield pre.select(b)
        return
    import multiprocessing

    from collections import deque

    with multiprocessing.get_context("spawn").Pool(processes, initializer=_pool_init, initargs=(pre,)) as pool:
        window: deque = deque()   # at most 2 batches per process in flight (imap would read ahead without bound)
        for b in batches:
            window.append(pool.apply_async(_pool_select, (b,)))
            if len(window) >= 2 * processes:
                yield window.popleft().get()
        while window:
            yield window.popleft().get()


# --- rescan records ---------------------------------------------------------------------

def rescan_record(listing_id: str, raw: bytes, topic: str, partition: int, offset: int,
                  delta: BrandDelta) -> bytes:
    """The re-check request for one live listing: its latest record (`listing`, embedded as
    read), where that was read (`source`), and the brand change it is re-checked for (`scope`).
    `listing_id` is at the top, so the job keys it like the listing."""
    head = orjson.dumps({"listing_id": listing_id,
                         "scope": {"brand_id": delta.brand_id, "brand_version": delta.version,
                                   "reason": delta.reason},
                         "source": {"topic": topic, "partition": partition, "offset": offset}})
    return head[:-1] + b',"listing":' + raw.strip() + b"}"


@dataclass(frozen=True, slots=True)
class Rescan:
    listing: dict
    brand_id: str
    brand_version: int
    reason: str
    source: Mapping[str, object]


def parse_rescan(obj: dict) -> Rescan:
    """The parts of a rescan record (ValueError naming the field when one is wrong)."""
    scope = obj.get("scope")
    if not isinstance(scope, dict):
        raise ValueError("scope: required object")
    bid, ver, reason = scope.get("brand_id"), scope.get("brand_version"), scope.get("reason")
    if not isinstance(bid, str) or not bid:
        raise ValueError("scope.brand_id: required string")
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
        raise ValueError("scope.brand_version: required integer >= 1")
    if not isinstance(reason, str) or len(reason) > 200:
        raise ValueError("scope.reason: required string of at most 200 characters")
    src = obj.get("source")
    if (not isinstance(src, dict) or not isinstance(src.get("topic"), str)
            or not all(isinstance(src.get(k), int) and not isinstance(src.get(k), bool) and src.get(k) >= 0
                       for k in ("partition", "offset"))):
        raise ValueError("source: required {topic, partition, offset}")
    listing = obj.get("listing")
    if not isinstance(listing, dict):
        raise ValueError("listing: required object")
    if listing.get("listing_id") != obj.get("listing_id"):
        raise ValueError("listing.listing_id: differs from the rescan's listing_id")
    return Rescan(listing, bid, ver, reason, {"topic": src["topic"], "partition": src["partition"],
                                              "offset": src["offset"]})


class OpenFlags:
    """Open flags per brand, from `listing-status` records (key [listing_id, brand_id], value the
    latest decision for the pair): listing_id -> seller_id of every pair not `clear`."""

    def __init__(self) -> None:
        self._by_brand: dict[str, dict[str, str]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            lid, bid = orjson.loads(key) if key else (None, None)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return
        if not isinstance(lid, str) or not isinstance(bid, str):
            return
        try:
            d = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            d = None
        flags = self._by_brand.setdefault(bid, {})
        if isinstance(d, dict) and d.get("action") not in (None, "clear"):
            flags[lid] = str(d.get("seller_id", ""))
        else:
            flags.pop(lid, None)

    def of(self, brand_id: str, sellers: frozenset[str] | None = None) -> list[str]:
        """The open flags' listing ids (sorted), only those of `sellers` when given."""
        flags = self._by_brand.get(brand_id, {})
        return sorted(lid for lid, s in flags.items() if sellers is None or s in sellers)

    def __len__(self) -> int:
        return sum(len(f) for f in self._by_brand.values())
