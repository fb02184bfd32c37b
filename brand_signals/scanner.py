"""Scan a batch of listings against a catalogue: find evidence with every signal source, then
decide. Evidence depends only on a listing's content and the catalogue, so it is memoised by
content hash: an unchanged re-post (most of the traffic) costs a hash and a dict look-up, and
only seller and price are re-evaluated.

A memo entry remembers the catalogue version it was made at. After a brand update it stays
valid unless it shows the changed brand or the changed brand's marks, old or new, could take
part in matching its texts (`Catalog.still_valid`: a re-check against that brand alone); a
policy-only update (enforcement, sellers, price floor) changes no evidence. The image source
is rebuilt only when a brand's images change; otherwise it keeps its indexes and per-image
results and only reads text found in images against the new word marks.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Protocol, Sequence

from brand_signals.catalog import Catalog
from brand_signals.decide import decide
from brand_signals.feedback import (
    NO_FINGERPRINT,
    ContextStore,
    FeedbackState,
    Fingerprint,
    ListingContext,
    fingerprint,
)
from brand_signals.records import Decision, Evidence, Listing, Op

# Memo entries kept per scanner instance. An entry is ~280 bytes with its key; 200 k entries
# is ~56 MB per Python worker, enough to cover the re-post horizon of a slot's partition.
MEMO_ENTRIES = 200_000
# Written into every decision: which matching logic made it.
MODEL_VERSION = "zeroscan-text-1"
_SEP = "\x1f"


def content_key(listing: Listing) -> bytes:
    """Hash of everything that decides whether a listing presents a brand (not seller, price)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_SEP.join((listing.title, listing.brand, listing.description, listing.category)).encode(
        "utf-8", "surrogatepass"))
    for b in listing.bullet_points:
        h.update(b"\x1e" + b.encode("utf-8", "surrogatepass"))
    for im in listing.images:
        h.update(b"\x1d" + (im.sha256 or im.uri).encode("utf-8", "surrogatepass"))
    return h.digest()


def _texts(listing: Listing) -> tuple[str, ...]:
    """The fields word marks are read in."""
    return (listing.title, listing.brand, listing.description, " \n ".join(listing.bullet_points))


class ImageSource(Protocol):
    """Evidence from listing images (logos, text read from images, copies of product photos)."""

    def find(self, listings: Sequence[Listing], base_dir: str | None = None) -> list[list[Evidence]]: ...

    def close(self) -> None: ...


class Scanner:
    """Stateless apart from its memo; one per worker."""

    def __init__(self, model_version: str, memo_entries: int = MEMO_ENTRIES,
                 images: Callable[[Catalog], ImageSource] | None = None, image_base_dir: str | None = None):
        """`images` builds the image signal source for a catalogue (None: text only);
        `image_base_dir` resolves relative image uris of listings."""
        self.model_version = model_version
        self._images_factory = images
        self._images: ImageSource | None = None
        self._images_key: bytes | None = None
        self.image_base_dir = image_base_dir
        # content key -> (evidence, catalogue version it holds for, text read from its images)
        self._memo: OrderedDict[bytes, tuple[list[Evidence], int, tuple[str, ...]]] = OrderedDict()
        self._memo_entries = memo_entries
        self._fingerprints: OrderedDict[bytes, Fingerprint] = OrderedDict()
        # Image digests the image source computed, by content key (memo hits skip the source).
        self._digests: OrderedDict[bytes, frozenset[str]] = OrderedDict()
        self.feedback: FeedbackState | None = None
        self.memo_hits = 0
        self.memo_misses = 0
        self.memo_rechecks = 0   # hits that were re-checked against changed brands and held

    def evidence(self, catalog: Catalog, listings: Sequence[Listing]) -> list[list[Evidence]]:
        if not catalog.brands:
            return [[] for _ in listings]
        out: list[list[Evidence] | None] = [None] * len(listings)
        todo: list[int] = []
        todo_keys: list[bytes] = []
        memo = self._memo
        for i, listing in enumerate(listings):
            if listing.op is Op.DELETE:
                out[i] = []
                continue
            k = content_key(listing)
            hit = memo.get(k)
            if hit is not None and hit[1] != catalog.version:
                if catalog.still_valid(hit[1], (e.brand_id for e in hit[0]), _texts(listing) + hit[2],
                                       bool(listing.images)):
                    hit = memo[k] = (hit[0], catalog.version, hit[2])
                    self.memo_rechecks += 1
                else:
                    hit = None
            if hit is not None:
                out[i] = hit[0]
                self.memo_hits += 1
            else:
                todo.append(i)
                todo_keys.append(k)
        if todo:
            self.memo_misses += len(todo)
            batch = [listings[i] for i in todo]
            found = catalog.wordmarks.match_many(batch)
            texts: Sequence[tuple[str, ...]] = ()
            if self._images_factory is not None and any(x.images for x in batch):
                images = self._image_source(catalog)
                found = [ev + iev for ev, iev in zip(found, images.find(batch, self.image_base_dir))]
                texts = getattr(images, "last_texts", ())
                for k, d in zip(todo_keys, getattr(images, "last_digests", ())):
                    if d:
                        self._digests[k] = d
                while len(self._digests) > self._memo_entries:
                    self._digests.popitem(last=False)
            for n, (i, k, ev) in enumerate(zip(todo, todo_keys, found)):
                out[i] = ev
                memo[k] = (ev, catalog.version, texts[n] if n < len(texts) else ())
            while len(memo) > self._memo_entries:
                memo.popitem(last=False)
        return out  # type: ignore[return-value]

    def _image_source(self, catalog: Catalog) -> "ImageSource":
        """Built on first use and again whenever a brand's images (logos, product images)
        change; after other brand updates it keeps its indexes and cached per-image results and
        reads text found in images against the catalogue's word marks."""
        if self._images is None or self._images_key != catalog.images_key:
            if self._images is not None:
                self._images.close()
            self._images = self._images_factory(catalog)
            self._images_key = catalog.images_key
            if hasattr(self._images, "verify"):  # fetch a claimed digest of a removed listing's image
                self._images.verify = lambda sha: self.feedback is not None and self.feedback.has_image(sha)
        if hasattr(self._images, "wordmarks"):
            self._images.wordmarks = catalog.wordmarks
        return self._images

    def close(self) -> None:
        if self._images is not None:
            self._images.close()

    def _fingerprint(self, listing: Listing) -> Fingerprint:
        k = content_key(listing)
        fp = self._fingerprints.get(k)
        if fp is None:
            fp = self._fingerprints[k] = fingerprint(listing, self._digests.get(k, ()))
            while len(self._fingerprints) > self._memo_entries:
                self._fingerprints.popitem(last=False)
        return fp

    def context(self, catalog: Catalog, listing: Listing, feedback: FeedbackState | None = None) -> ListingContext:
        """What one listing update presents (a feedback event about it is judged on it): the
        brands with evidence and, when there are any, its fingerprint; as `scan` finds them."""
        self.feedback = feedback
        presented = frozenset(e.brand_id for e in self.evidence(catalog, [listing])[0] if e.brand_id)
        return ListingContext(listing.listing_id, listing.seller_id, presented,
                              self._fingerprint(listing) if presented else NO_FINGERPRINT)

    def scan(self, catalog: Catalog, listings: Sequence[Listing], now_ms: int,
             feedback: FeedbackState | None = None, contexts: ContextStore | None = None) -> list[Decision | None]:
        """Decisions for a batch. With `feedback`, evidence learned from removals is added and
        reinstated listings are exempt; with `contexts`, what each listing presented is kept."""
        self.feedback = feedback
        evidence = self.evidence(catalog, listings)
        out: list[Decision | None] = []
        learned = feedback is not None and feedback.has_confirmed()
        seen: list[ListingContext] = []
        for listing, ev in zip(listings, evidence):
            if listing.op is not Op.DELETE:
                presented = frozenset(e.brand_id for e in ev if e.brand_id)
                fp = NO_FINGERPRINT
                if ev or learned:
                    fp = self._fingerprint(listing)
                    if feedback is not None:
                        ev = [e for e in ev + feedback.evidence(listing, fp, presented)
                              if not feedback.is_exempt(listing.listing_id, e.brand_id)]
                if feedback is not None:
                    digests = self._digests.get(content_key(listing)) if self._digests else None
                    if digests:
                        feedback.observe_images(listing.seller_id, digests)
                if contexts is not None:  # absences too: a removal of it is then refused, not held
                    seen.append(ListingContext(listing.listing_id, listing.seller_id, presented,
                                               fp if presented else NO_FINGERPRINT))
            out.append(decide(listing, ev, catalog.brands, now_ms, self.model_version))
        if seen:   # one store write for the batch
            contexts.remember_many(seen)
        return out
