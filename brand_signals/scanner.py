"""Scan a batch of listings against a catalogue: find evidence with every configured signal
source (brand_signals.signals), then decide. Evidence depends only on a listing's content and the catalogue, so it is memoised by
content hash: an unchanged re-post (most of the traffic) costs a hash and a dict look-up, and
only seller and price are re-evaluated.

A memo entry remembers the catalogue version it was made at. After a brand update it stays
valid unless it shows the changed brand or the changed brand's marks, old or new, could take
part in matching its texts (`Catalog.still_valid`: a re-check against that brand alone); a
policy-only update (enforcement, sellers, price floor) changes no evidence. Each source's
index is built once per catalogue version it is asked at; a source may keep its previous
index (the image source does unless a brand's images changed).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Sequence

from brand_signals.text import textnorm as tn
from brand_signals.catalog import Catalog
from brand_signals.decide import decide_all
from brand_signals.feedback.context import ContextStore, ListingContext
from brand_signals.feedback.fingerprints import NO_FINGERPRINT, Fingerprint, fingerprint, load_word_frequencies
from brand_signals.feedback.state import FeedbackState
from brand_signals.records import Decision, Evidence, Listing, Op
from brand_signals.signals import Batch, SignalIndex, SignalSource, Signals, Stage
from brand_signals.sources import DEFAULT as DEFAULT_SOURCES
from brand_signals.sources import load as load_sources

# Memo entries kept per scanner instance. An entry is ~280 bytes with its key; 200 k entries
# is ~56 MB per Python worker, enough to cover the re-post horizon of a slot's partition.
MEMO_ENTRIES = 200_000
# Written into every decision: which matching logic made it.
MODEL_VERSION = "zeroscan-text-1"
_SEP = "\x1f"
_NOTHING: frozenset[str] = frozenset()


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


class Scanner:
    """Stateless apart from its memo and its sources' indexes; one per worker.

    Runs the signal sources (brand_signals.signals) it is given, in order: CONTENT sources
    for the listings the memo does not answer, then LEARNED and POLICY ones, then decides."""

    def __init__(self, model_version: str, memo_entries: int = MEMO_ENTRIES,
                 images: Callable[[Catalog], object] | None = None, image_base_dir: str | None = None,
                 sources: Sequence[SignalSource] | None = None):
        """`sources`: the signal sources to run (None: the built-in ones, `sources.DEFAULT`).
        `images` builds the image signal index for a catalogue (None: text only) when
        `sources` is None; `image_base_dir` resolves relative image uris of listings."""
        self.model_version = model_version
        self.sources: tuple[SignalSource, ...] = tuple(load_sources(DEFAULT_SOURCES, images=images)
                                                      if sources is None else sources)
        self.signals = Signals(t for src in self.sources for t in src.types)
        self._stages = {stage: [src for src in self.sources if src.stage is stage] for stage in Stage}
        # source name -> (the catalogue it was built for, index)
        self._indexes: dict[str, tuple[Catalog, SignalIndex]] = {}
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

    @staticmethod
    def load_reference_data() -> None:
        """Load the word lists, confusables and word frequencies that matching and
        fingerprints read, once per process; a scan worker calls it at start, so that its
        first batches (and the records measured after them) do not pay for it."""
        tn.load_word_lists()
        load_word_frequencies()
    def index(self, source: SignalSource, catalog: Catalog) -> SignalIndex:
        """The source's index for this catalogue version, built on first use."""
        have = self._indexes.get(source.name)
        if have is None or have[0] is not catalog:
            self._indexes[source.name] = have = (catalog, source.build(catalog, have[1] if have else None))
        return have[1]

    def _batch(self, catalog: Catalog, **kw) -> Batch:
        return Batch(catalog, self.feedback, self.image_base_dir, **kw)

    def evidence(self, catalog: Catalog, listings: Sequence[Listing]) -> list[list[Evidence]]:
        """What the CONTENT sources find for each listing (memoised by content)."""
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
            found: list[list[Evidence]] = [[] for _ in batch]
            texts: dict[int, tuple[str, ...]] = {}
            for source in self._stages[Stage.CONTENT]:
                asked = [n for n, x in enumerate(batch) if source.wants(x)]
                if not asked:
                    continue
                every = len(asked) == len(batch)
                ctx = self._batch(catalog)
                got = self.index(source, catalog).find(batch if every else [batch[n] for n in asked], ctx)
                for n, ev in zip(asked, got):
                    if ev:
                        found[n] = found[n] + ev
                for m, t in ctx.texts.items():
                    texts[asked[m]] = t
                for m, d in ctx.digests.items():
                    self._digests[todo_keys[asked[m]]] = d
                while len(self._digests) > self._memo_entries:
                    self._digests.popitem(last=False)
            for n, (i, k, ev) in enumerate(zip(todo, todo_keys, found)):
                out[i] = ev
                memo[k] = (ev, catalog.version, texts.get(n, ()))
            while len(memo) > self._memo_entries:
                memo.popitem(last=False)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        for _, index in self._indexes.values():
            index.close()
        self._indexes.clear()

    def _fingerprint(self, listing: Listing) -> Fingerprint:
        k = content_key(listing)
        fp = self._fingerprints.get(k)
        if fp is None:
            fp = self._fingerprints[k] = fingerprint(listing, self._digests.get(k, ()))
            while len(self._fingerprints) > self._memo_entries:
                self._fingerprints.popitem(last=False)
        return fp

    def _ask(self, stage: Stage, catalog: Catalog, listings: Sequence[Listing], evidence: list[list[Evidence]],
             idx: Sequence[int], **kw) -> None:
        """Ask the sources of `stage` about listings[idx] and add what they find to `evidence`."""
        for source in self._stages[stage]:
            asked = [i for i in idx if source.wants(listings[i])]
            if not asked:
                continue
            ctx = self._batch(catalog, found=[evidence[i] for i in asked],
                              **{k: [v[i] for i in asked] for k, v in kw.items()})
            for i, ev in zip(asked, self.index(source, catalog).find([listings[i] for i in asked], ctx)):
                if ev:
                    evidence[i] = evidence[i] + ev
    def context(self, catalog: Catalog, listing: Listing, feedback: FeedbackState | None = None) -> ListingContext:
        """What one listing update presents (a feedback event about it is judged on it): the
        brands with evidence and, when there are any, its fingerprint; as `scan` finds them."""
        self.feedback = feedback
        presented = frozenset(e.brand_id for e in self.evidence(catalog, [listing])[0] if e.brand_id)
        return ListingContext(listing.listing_id, listing.seller_id, presented,
                              self._fingerprint(listing) if presented else NO_FINGERPRINT)

    def scan(self, catalog: Catalog, listings: Sequence[Listing], now_ms: int,
             feedback: FeedbackState | None = None, contexts: ContextStore | None = None) -> list[Decision | None]:
        """The strongest decision per listing of a batch (see `scan_all`)."""
        return [ds[-1] if ds else None for ds in self.scan_all(catalog, listings, now_ms, feedback, contexts)]

    def scan_all(self, catalog: Catalog, listings: Sequence[Listing], now_ms: int,
                 feedback: FeedbackState | None = None,
                 contexts: ContextStore | None = None, quiet: list[bool] | None = None) -> list[list[Decision]]:
        """Per listing of a batch, its decisions: one per brand it is flagged for, the strongest
        last (`decide_all`). With `feedback`, evidence learned from removals is added and
        reinstated listings are exempt; with `contexts`, what each listing presented is kept.
        `quiet`, when given, is filled with one flag per listing: an upsert for which no source
        found any evidence (content or learned), so the POLICY sources (price, seller) were not
        asked and its price could not have changed what it is decided (the job's price loop)."""
        self.feedback = feedback
        evidence = self.evidence(catalog, listings)
        learned = feedback is not None and feedback.has_confirmed()
        n = len(listings)
        presented: list[frozenset[str]] = [_NOTHING] * n
        fps: list[Fingerprint] = [NO_FINGERPRINT] * n
        seen: list[frozenset[str] | None] = [None] * n
        live: list[int] = []
        ask: list[int] = []     # for the LEARNED stage: showed a brand, images seen, or removals confirmed
        for i, (listing, ev) in enumerate(zip(listings, evidence)):
            if listing.op is Op.DELETE:
                continue
            live.append(i)
            if ev:
                presented[i] = frozenset(e.brand_id for e in ev if e.brand_id)
            if ev or learned:
                fps[i] = self._fingerprint(listing)
            if feedback is not None:
                if self._digests:
                    seen[i] = self._digests.get(content_key(listing))
                if ev or learned or seen[i]:
                    ask.append(i)
        if ask:
            self._ask(Stage.LEARNED, catalog, listings, evidence, ask, presented=presented, fingerprints=fps,
                      images=seen)
            for i in ask:   # a reinstated listing is exempt for its brand
                if evidence[i]:
                    lid = listings[i].listing_id
                    evidence[i] = [e for e in evidence[i] if not feedback.is_exempt(lid, e.brand_id)]
        if contexts is not None and live:   # absences too: a removal of it is then refused, not held
            contexts.remember_many([ListingContext(listings[i].listing_id, listings[i].seller_id, presented[i],
                                                   fps[i] if presented[i] else NO_FINGERPRINT) for i in live])
        if quiet is not None:
            quiet[:] = [False] * n
            for i in live:
                quiet[i] = not evidence[i]
        self._ask(Stage.POLICY, catalog, listings, evidence, [i for i in live if evidence[i]], presented=presented,
                  fingerprints=fps, images=seen)
        return [decide_all(listing, ev, catalog.brands, now_ms, self.model_version, self.signals, facts=False)
                for listing, ev in zip(listings, evidence)]
