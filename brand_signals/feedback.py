"""The feedback loop: brand owners' self-service removals, appeals against them, and what the
scanner learns from both.

- A removal is accepted when the scanner has seen the listing present the removing brand; it
  then becomes a takedown with a `brand_removal` signal and the listing's evidence (text
  fingerprint, images, seller) enters the confirmed-infringement index. A removal of a listing
  the scanner has seen presenting only other brands is refused; one of a listing it has never
  seen is held for review. Both are counted.
- Near-duplicates of a confirmed listing are flagged with `feedback_neighbor`; the seller's
  other listings that present the same brand are scanned with raised suspicion.
- `appeal_upheld` reinstates the listing (`clear`), withdraws its evidence and counts against
  the brand; `appeal_rejected` confirms it. Accuracy = confirmed / decided removals over a
  rolling window; below the bar a brand's removals become `review` decisions until it recovers.

Everything that changes this state is a `LedgerEvent`; `FeedbackState.apply` is idempotent, so
the ledger can be replayed at start and events seen twice are harmless. The clock is injected.
"""
from __future__ import annotations

import enum
import hashlib
import re
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import orjson

from brand_signals.records import (
    Action,
    BrandReference,
    Decision,
    Evidence,
    FeedbackEvent,
    FeedbackKind,
    Listing,
    Signal,
    SignalKind,
)

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """Tunable by configuration (`ZEROSCAN_ACCURACY_BAR`, `ZEROSCAN_ACCURACY_WINDOW_DAYS`)."""

    # Amazon asks brand owners for >= 90 % accuracy to keep self-service removal privileges.
    accuracy_bar: float = 0.90
    window_ms: int = 90 * DAY_MS
    # A brand is judged only once this many of its removals were decided on appeal: one
    # overturned removal out of one must not suspend a brand.
    min_decided: int = 5
    # Jaccard similarity of the title's word sets from which a listing is a near-duplicate of a
    # confirmed one (one word changed in six keeps 0.71, one added in eight 0.89).
    neighbor_jaccard: float = 0.6
    # From this similarity the neighbour alone is confident (score >= 0.8: the brand's own
    # enforcement); between the two it asks for review.
    neighbor_confident: float = 0.75
    # Raised suspicion for a seller with a confirmed removal for the brand: enough to turn a
    # weak presentation (a single fuzzy hit scoring ~0.7) into a confident one.
    seller_suspicion_score: float = 0.5


class LedgerKind(enum.Enum):
    REMOVAL_ACCEPTED = "removal_accepted"
    REMOVAL_DEMOTED = "removal_demoted"     # accepted as a review: the brand is suspended
    REMOVAL_HELD = "removal_held"           # the scanner never saw the listing: a human decides
    REMOVAL_REFUSED = "removal_refused"     # the listing presents other brands, not this one
    APPEAL_UPHELD = "appeal_upheld"
    APPEAL_REJECTED = "appeal_rejected"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies a listing's content across light edits and re-uploads."""

    shingles: frozenset[int]
    images: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"shingles": sorted(self.shingles), "images": sorted(self.images)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Fingerprint":
        return cls(frozenset(int(x) for x in d.get("shingles", ())), frozenset(d.get("images", ())))


_TOKEN = re.compile(r"[^\W_]+")
# Bounds the fingerprint of a hostile 20,000-character description.
MAX_FINGERPRINT_TOKENS = 256


def _shingle(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")


def fingerprint(listing: Listing) -> Fingerprint:
    text = unicodedata.normalize("NFKC", f"{listing.title} {listing.brand}").casefold()
    shingles = {_shingle(t) for t in _TOKEN.findall(text)[:MAX_FINGERPRINT_TOKENS]}
    images = frozenset(im.sha256 for im in listing.images if im.sha256)
    return Fingerprint(frozenset(shingles), images)


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class ListingContext:
    """What the scanner has seen of one listing: enough to judge a removal and to index it."""

    listing_id: str
    seller_id: str
    presented: frozenset[str]
    fingerprint: Fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"listing_id": self.listing_id, "seller_id": self.seller_id, "presented": sorted(self.presented),
                "fingerprint": self.fingerprint.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ListingContext":
        return cls(d["listing_id"], d["seller_id"], frozenset(d["presented"]), Fingerprint.from_json(d["fingerprint"]))


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    kind: LedgerKind
    listing_id: str
    brand_id: str
    event_time_ms: int
    actor: str = ""
    seller_id: str = ""
    fingerprint: Fingerprint | None = None
    # Set on the event that changed the brand's self-service standing: "suspended" or
    # "reinstated" (the brand's notification; not part of the event's identity).
    brand_status: str = ""

    @property
    def key(self) -> tuple:
        return (self.kind.value, self.listing_id, self.brand_id, self.event_time_ms, self.actor)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "listing_id": self.listing_id, "brand_id": self.brand_id,
                             "event_time": self.event_time_ms, "actor": self.actor, "seller_id": self.seller_id}
        if self.fingerprint is not None:
            d["fingerprint"] = self.fingerprint.to_json()
        if self.brand_status:
            d["brand_status"] = self.brand_status
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "LedgerEvent":
        fp = d.get("fingerprint")
        return cls(LedgerKind(d["kind"]), d["listing_id"], d["brand_id"], int(d["event_time"]), d.get("actor", ""),
                   d.get("seller_id", ""), Fingerprint.from_json(fp) if fp else None, d.get("brand_status", ""))


@dataclass(slots=True)
class _Confirmed:
    brand_id: str
    seller_id: str
    fingerprint: Fingerprint
    event_time_ms: int


@dataclass(slots=True)
class FeedbackState:
    """Replicated in every scan operator and rebuilt from the ledger."""

    policy: FeedbackPolicy = field(default_factory=FeedbackPolicy)
    version: int = 0
    _seen: set = field(default_factory=set)
    _confirmed: dict[str, _Confirmed] = field(default_factory=dict)       # listing_id -> evidence
    _by_shingle: dict[int, set[str]] = field(default_factory=dict)         # shingle -> listing ids
    _by_image: dict[str, set[str]] = field(default_factory=dict)
    _seller_brands: dict[tuple[str, str], int] = field(default_factory=dict)
    _exempt: set[tuple[str, str]] = field(default_factory=set)            # (listing, brand) reinstated
    _outcomes: dict[str, deque] = field(default_factory=dict)             # brand -> (time, confirmed?)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)     # (brand, ledger kind) -> n
    _status_changes: dict[str, list] = field(default_factory=dict)        # brand -> [(time, status)]

    def apply(self, ev: LedgerEvent) -> bool:
        """Apply one ledger event; False when it was applied before."""
        if ev.key in self._seen:
            return False
        self._seen.add(ev.key)
        self.version += 1
        ck = (ev.brand_id, ev.kind.value)
        self._counts[ck] = self._counts.get(ck, 0) + 1
        if ev.brand_status:
            self._status_changes.setdefault(ev.brand_id, []).append((ev.event_time_ms, ev.brand_status))
        if ev.kind is LedgerKind.REMOVAL_ACCEPTED and ev.fingerprint is not None:
            self._confirm(ev)
            self._exempt.discard((ev.listing_id, ev.brand_id))
        elif ev.kind is LedgerKind.APPEAL_UPHELD:
            self._withdraw(ev.listing_id, ev.brand_id)
            self._exempt.add((ev.listing_id, ev.brand_id))
            self._outcomes.setdefault(ev.brand_id, deque()).append((ev.event_time_ms, False))
        elif ev.kind is LedgerKind.APPEAL_REJECTED:
            self._outcomes.setdefault(ev.brand_id, deque()).append((ev.event_time_ms, True))
        return True

    def _confirm(self, ev: LedgerEvent) -> None:
        self._withdraw(ev.listing_id)  # a listing is confirmed for one brand at a time
        fp = ev.fingerprint
        self._confirmed[ev.listing_id] = _Confirmed(ev.brand_id, ev.seller_id, fp, ev.event_time_ms)
        for s in fp.shingles:
            self._by_shingle.setdefault(s, set()).add(ev.listing_id)
        for im in fp.images:
            self._by_image.setdefault(im, set()).add(ev.listing_id)
        if ev.seller_id:
            k = (ev.seller_id, ev.brand_id)
            self._seller_brands[k] = self._seller_brands.get(k, 0) + 1

    def _withdraw(self, listing_id: str, brand_id: str | None = None) -> None:
        """Take a confirmed listing's evidence out of the index (only if it was confirmed for
        `brand_id`, when given)."""
        c = self._confirmed.get(listing_id)
        if c is None or (brand_id is not None and c.brand_id != brand_id):
            return
        del self._confirmed[listing_id]
        _unindex(self._by_shingle, c.fingerprint.shingles, listing_id)
        _unindex(self._by_image, c.fingerprint.images, listing_id)
        k = (c.seller_id, c.brand_id)
        if self._seller_brands.get(k, 0) > 1:
            self._seller_brands[k] -= 1
        else:
            self._seller_brands.pop(k, None)

    def _neighbor_score(self, sim: float) -> float:
        """0.5 at the neighbour threshold, 0.8 at the confident one, 1.0 for a copy."""
        p = self.policy
        if sim >= p.neighbor_confident:
            return 0.8 + 0.2 * (sim - p.neighbor_confident) / (1.0 - p.neighbor_confident)
        return 0.5 + 0.3 * (sim - p.neighbor_jaccard) / (p.neighbor_confident - p.neighbor_jaccard)

    # --- questions the scanner and the feedback step ask -------------------------------------

    def accuracy(self, brand_id: str, now_ms: int) -> tuple[float | None, int]:
        """(confirmed / decided removals in the window, decided); None while nothing is decided."""
        return self._judge(self._outcomes.get(brand_id, ()), now_ms)

    def _judge(self, outcomes, now_ms: int) -> tuple[float | None, int]:
        start = now_ms - self.policy.window_ms
        recent = [ok for t, ok in outcomes if t >= start]
        if not recent:
            return None, 0
        return sum(recent) / len(recent), len(recent)

    def _is_suspended(self, acc: float | None, decided: int) -> bool:
        return acc is not None and decided >= self.policy.min_decided and acc < self.policy.accuracy_bar

    def suspended(self, brand_id: str, now_ms: int) -> bool:
        return self._is_suspended(*self.accuracy(brand_id, now_ms))

    def standing_change(self, ev: LedgerEvent) -> str:
        """"suspended" or "reinstated" when the brand's standing once `ev` is applied differs
        from the last one announced to it (recovery by ageing is announced at its next event)."""
        outcomes = list(self._outcomes.get(ev.brand_id, ()))
        verdict = {LedgerKind.APPEAL_UPHELD: False, LedgerKind.APPEAL_REJECTED: True}.get(ev.kind)
        if verdict is not None and ev.key not in self._seen:
            outcomes.append((ev.event_time_ms, verdict))
        now = self._is_suspended(*self._judge(outcomes, ev.event_time_ms))
        changes = self._status_changes.get(ev.brand_id)
        announced = bool(changes) and changes[-1][1] == "suspended"
        if now == announced:
            return ""
        return "suspended" if now else "reinstated"

    def status_changes(self, brand_id: str) -> list[tuple[int, str]]:
        """(event time, "suspended" | "reinstated") for every change of the brand's standing."""
        return list(self._status_changes.get(brand_id, ()))

    def count(self, brand_id: str, kind: LedgerKind) -> int:
        return self._counts.get((brand_id, kind.value), 0)

    def has_confirmed(self) -> bool:
        return bool(self._confirmed or self._seller_brands or self._exempt)

    def is_exempt(self, listing_id: str, brand_id: str) -> bool:
        return (listing_id, brand_id) in self._exempt

    def evidence(self, listing: Listing, fp: Fingerprint, presented: Iterable[str]) -> list[Evidence]:
        """Feedback-derived evidence for a listing being scanned."""
        if not self._confirmed:
            return []
        out: list[Evidence] = []
        own = self._confirmed.get(listing.listing_id)
        if own is not None:
            out.append(Evidence(own.brand_id, (Signal(SignalKind.BRAND_REMOVAL, 1.0, {
                "removed": True, "note": "removed by the brand owner"}),)))
        candidates: dict[str, int] = {}
        for s in fp.shingles:
            for lid in self._by_shingle.get(s, ()):
                candidates[lid] = candidates.get(lid, 0) + 1
        image_hits = {lid for im in fp.images for lid in self._by_image.get(im, ())}
        best: dict[str, tuple[float, str, str]] = {}
        for lid in set(candidates) | image_hits:
            if lid == listing.listing_id:
                continue
            c = self._confirmed[lid]
            sim = 1.0 if lid in image_hits else jaccard(fp.shingles, c.fingerprint.shingles)
            if sim >= self.policy.neighbor_jaccard and sim > best.get(c.brand_id, (0.0, "", ""))[0]:
                best[c.brand_id] = (sim, lid, "image" if lid in image_hits else "text")
        for brand_id, (sim, lid, via) in best.items():
            out.append(Evidence(brand_id, (Signal(SignalKind.FEEDBACK_NEIGHBOR, self._neighbor_score(sim), {
                "removed_listing_id": lid, "similarity": round(sim, 3), "via": via}),)))
        for brand_id in presented:
            n = self._seller_brands.get((listing.seller_id, brand_id))
            if n:
                out.append(Evidence(brand_id, (Signal(SignalKind.SELLER, self.policy.seller_suspicion_score, {
                    "seller_id": listing.seller_id, "confirmed_removals_for_brand": n}),)))
        return out


def _unindex(index: dict, keys, listing_id: str) -> None:
    for key in keys:
        ids = index.get(key)
        if ids is not None:
            ids.discard(listing_id)
            if not ids:
                del index[key]


def handle_feedback(ev: FeedbackEvent, context: ListingContext | None, state: FeedbackState,
                    brands: Mapping[str, BrandReference], now_ms: int,
                    model_version: str | None = None) -> tuple[Decision | None, LedgerEvent]:
    """The decision (if any) and the ledger event for one feedback event; the caller applies
    the ledger event to the state (and publishes it)."""
    brand = brands.get(ev.brand_id)
    seller = context.seller_id if context else ""

    def decision(action: Action, score: float, detail: dict[str, Any]) -> Decision:
        return Decision(listing_id=ev.listing_id, seller_id=seller or "unknown", brand_id=ev.brand_id,
                        action=action, score=score,
                        signals=(Signal(SignalKind.BRAND_REMOVAL, score, {
                            "kind": ev.kind.value, "actor": ev.actor, "reason": ev.reason, **detail}),),
                        decided_at=now_ms, brand_version=brand.version if brand else None,
                        model_version=model_version)

    def ledger(kind: LedgerKind, fp: Fingerprint | None = None) -> LedgerEvent:
        return LedgerEvent(kind, ev.listing_id, ev.brand_id, ev.event_time_ms, ev.actor, seller, fp)

    if ev.kind is FeedbackKind.BRAND_REMOVAL:
        if brand is None:
            return None, ledger(LedgerKind.REMOVAL_REFUSED)
        if context is None:
            return (decision(Action.REVIEW, 0.5, {"held": "the scanner has not seen this listing"}),
                    ledger(LedgerKind.REMOVAL_HELD))
        if ev.brand_id not in context.presented:
            return None, ledger(LedgerKind.REMOVAL_REFUSED)
        # The accuracy window ends at the removal's own event time, so a replay of the stream
        # judges every removal exactly as it was judged the first time.
        if state.suspended(ev.brand_id, ev.event_time_ms):
            acc, decided = state.accuracy(ev.brand_id, ev.event_time_ms)
            return (decision(Action.REVIEW, 0.5, {"suspended": True, "accuracy": round(acc or 0.0, 3),
                                                  "decided": decided}),
                    ledger(LedgerKind.REMOVAL_DEMOTED))
        return decision(Action.TAKEDOWN, 1.0, {}), ledger(LedgerKind.REMOVAL_ACCEPTED, context.fingerprint)
    if ev.kind is FeedbackKind.APPEAL_UPHELD:
        return decision(Action.CLEAR, 0.0, {"reinstated": True}), ledger(LedgerKind.APPEAL_UPHELD)
    return None, ledger(LedgerKind.APPEAL_REJECTED)


def ledger_json(ev: LedgerEvent) -> str:
    return orjson.dumps(ev.to_json()).decode()


class ContextStore:
    """What the scanner has seen, per listing (in memory; `connectors.context_store` keeps it
    in an embedded store). Only listings that presented some brand are remembered, and the
    presented brands accumulate: a removal is judged on what the scanner has ever seen."""

    def __init__(self) -> None:
        self._d: dict[str, ListingContext] = {}

    def get(self, listing_id: str) -> ListingContext | None:
        return self._d.get(listing_id)

    def remember(self, ctx: ListingContext) -> None:
        old = self._d.get(ctx.listing_id)
        self._d[ctx.listing_id] = merge_context(old, ctx)

    def close(self) -> None:
        pass


def merge_context(old: ListingContext | None, new: ListingContext) -> ListingContext:
    if old is None:
        return new
    return ListingContext(new.listing_id, new.seller_id, old.presented | new.presented, new.fingerprint)
