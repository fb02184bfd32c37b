"""The feedback loop: brand owners' self-service removals, appeals against them, and what the
scanner learns from both.

- A removal is accepted when the scanner has seen the listing present the removing brand; it
  then becomes a takedown with a `brand_removal` signal and the listing's evidence (text
  fingerprint, images, seller) enters the confirmed-infringement index. A removal of a listing
  the scanner has seen without the brand (presenting other brands or nothing) is refused and
  counts against the brand's accuracy; one of a listing it has never seen is held for review,
  up to a daily number per brand (beyond it: refused). Every outcome carries its reason.
- Near-duplicates of a confirmed listing are flagged with `feedback_neighbor` (a takedown, as
  the owner asked) only on specific evidence: the same image bytes (digests the scanner
  computed, not stock photos that many sellers use), or a similar title whose shared words are
  rare (weighted by word frequency), so generic words carry almost nothing. The seller's
  other listings that present the same brand are scanned with raised suspicion.
- `appeal_upheld` reinstates the listing (`clear`), withdraws its evidence and counts against
  the brand; `appeal_rejected` confirms it. Accuracy = confirmed / decided removals over a
  rolling window; below the bar a brand's removals become `review` decisions until it recovers.

Everything that changes this state is a `LedgerEvent`; `FeedbackState.apply` is idempotent, so
the ledger can be replayed at start and events seen twice are harmless. The clock is injected.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from brand_signals.feedback.context import ListingContext
from brand_signals.feedback.fingerprints import Fingerprint, jaccard
from brand_signals.feedback.ledger import LedgerEvent, LedgerKind, Refusal
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
    """Tunable per FeedbackState (its fields; the job runs the defaults: none is read from the environment)."""

    # Amazon asks brand owners for >= 90 % accuracy to keep self-service removal privileges.
    accuracy_bar: float = 0.90
    window_ms: int = 90 * DAY_MS
    # A brand is judged only once this many of its removals were decided on appeal: one
    # overturned removal out of one must not suspend a brand.
    min_decided: int = 5
    # Jaccard similarity of the title's word sets from which a listing is a near-duplicate of a
    # confirmed one (one word changed in six keeps 0.71, one added in eight 0.89). 0.65, not
    # 0.6: on the dev text set 0.6 let one honest listing through that shared a single rare word
    # ("SmartFit", 0.64) with a removed one (benchmarks/neighbors_dev.py).
    neighbor_jaccard: float = 0.65
    # From this similarity the neighbour alone is confident (score >= 0.8: the brand's own
    # enforcement); between the two it asks for review.
    neighbor_confident: float = 0.75
    # Raised suspicion for a seller with a confirmed removal for the brand: enough to turn a
    # weak presentation (a single fuzzy hit scoring ~0.7) into a confident one.
    seller_suspicion_score: float = 0.5
    # The rarity the words a neighbour shares with a confirmed listing must add up to (see
    # `word_rarity`: 3.0 for a word rarer than once per billion words, 0 from once per million):
    # one invented word or model number, or two or three uncommon ones. "Wireless Bluetooth
    # Headphones Black Over Ear Foldable" shares 0.4 ("foldable") with a removed headphone.
    neighbor_min_rarity: float = 2.0
    # An image seen in listings of this many distinct sellers is a stock photo: not evidence.
    stock_image_sellers: int = 5
    # Removals of listings the scanner never saw, held for a human per brand and day (event
    # time); beyond it they are refused. Before the cap one token at the API's rate limit could
    # create ~86,000 review decisions a day.
    max_held_per_day: int = 50


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
    _held: dict[tuple[str, int], int] = field(default_factory=dict)       # (brand, day) -> held removals
    # Distinct sellers seen with each fetched image (this operator's listings, in memory,
    # bounded): tells stock photos from a counterfeiter's own.
    _image_sellers: OrderedDict = field(default_factory=OrderedDict)

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
        verdict = _verdict(ev)
        if verdict is not None:
            self._outcomes.setdefault(ev.brand_id, deque()).append((ev.event_time_ms, verdict))
        if ev.kind is LedgerKind.REMOVAL_ACCEPTED and ev.fingerprint is not None:
            self._confirm(ev)
            self._exempt.discard((ev.listing_id, ev.brand_id))
        elif ev.kind is LedgerKind.REMOVAL_HELD:
            hk = (ev.brand_id, ev.event_time_ms // DAY_MS)
            self._held[hk] = self._held.get(hk, 0) + 1
        elif ev.kind is LedgerKind.APPEAL_UPHELD:
            self._withdraw(ev.listing_id, ev.brand_id)
            self._exempt.add((ev.listing_id, ev.brand_id))
        return True

    def held_on_day(self, brand_id: str, event_time_ms: int) -> int:
        return self._held.get((brand_id, event_time_ms // DAY_MS), 0)

    def observe_images(self, seller_id: str, digests: Iterable[str]) -> None:
        """Count the sellers each fetched image appears with (up to the stock-photo bar)."""
        cap = self.policy.stock_image_sellers
        sightings = self._image_sellers
        for d in digests:
            sellers = sightings.get(d)
            if sellers is None:
                sightings[d] = sellers = set()
                if len(sightings) > MAX_IMAGE_SIGHTINGS:
                    sightings.popitem(last=False)
            if len(sellers) < cap:
                sellers.add(seller_id)

    def is_stock_image(self, digest: str) -> bool:
        return len(self._image_sellers.get(digest, ())) >= self.policy.stock_image_sellers

    def _confirm(self, ev: LedgerEvent) -> None:
        self._withdraw(ev.listing_id)  # a listing is confirmed for one brand at a time
        fp = ev.fingerprint
        self._confirmed[ev.listing_id] = _Confirmed(ev.brand_id, ev.seller_id, fp, ev.event_time_ms)
        for s in fp.rarity:  # a neighbour must share a rare word: only those lead to candidates
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
        _unindex(self._by_shingle, c.fingerprint.rarity, listing_id)
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
        verdict = _verdict(ev)
        if verdict is not None and ev.key not in self._seen:
            outcomes.append((ev.event_time_ms, verdict))
        now = self._is_suspended(*self._judge(outcomes, ev.event_time_ms))
        changes = self._status_changes.get(ev.brand_id)
        announced = bool(changes) and changes[-1][1] == "suspended"
        if now == announced:
            return ""
        return "suspended" if now else "reinstated"

    def accuracy_trend(self, brand_id: str, points: int = 200) -> list[tuple[int, float, int]]:
        """(event time, accuracy over the window ending then, decided removals in it) at each of
        the brand's last `points` decided removals, oldest first: the trend of its standing."""
        outcomes = sorted(self._outcomes.get(brand_id, ()))
        out: list[tuple[int, float, int]] = []
        lo = good = 0
        for hi, (t, ok) in enumerate(outcomes):
            good += ok
            while outcomes[lo][0] < t - self.policy.window_ms:
                good -= outcomes[lo][1]
                lo += 1
            out.append((t, good / (hi - lo + 1), hi - lo + 1))
        return out[-points:]

    def status_changes(self, brand_id: str) -> list[tuple[int, str]]:
        """(event time, "suspended" | "reinstated") for every change of the brand's standing."""
        return list(self._status_changes.get(brand_id, ()))

    def count(self, brand_id: str, kind: LedgerKind) -> int:
        return self._counts.get((brand_id, kind.value), 0)

    def has_image(self, digest: str) -> bool:
        """Whether a confirmed listing had this image (its claimed digest then gets verified)."""
        return digest in self._by_image

    def has_confirmed(self) -> bool:
        return bool(self._confirmed or self._seller_brands or self._exempt)

    def is_exempt(self, listing_id: str, brand_id: str) -> bool:
        return (listing_id, brand_id) in self._exempt

    def evidence(self, listing: Listing, fp: Fingerprint, presented: Iterable[str]) -> list[Evidence]:
        """Feedback-derived evidence for a listing being scanned: its own removal and its
        neighbours' (`removal_evidence`), then its seller's standing (`seller_evidence`)."""
        if not self._confirmed:
            return []
        return self.removal_evidence(listing, fp) + self.seller_evidence(listing, presented)

    def removal_evidence(self, listing: Listing, fp: Fingerprint) -> list[Evidence]:
        """The listing's own confirmed removal, and confirmed removals it is a near-duplicate of
        (by rare shared words, or a shared image that is not a stock photo)."""
        if not self._confirmed:
            return []
        out: list[Evidence] = []
        own = self._confirmed.get(listing.listing_id)
        if own is not None:
            out.append(Evidence(own.brand_id, (Signal(SignalKind.BRAND_REMOVAL, 1.0, {
                "removed": True, "note": "removed by the brand owner"}),)))
        p = self.policy
        candidates = {lid for s in fp.rarity for lid in self._by_shingle.get(s, ())}
        image_hits = {lid for im in fp.images if not self.is_stock_image(im) for lid in self._by_image.get(im, ())}
        best: dict[str, tuple[float, str, str, float]] = {}
        for lid in candidates | image_hits:
            if lid == listing.listing_id:
                continue
            c = self._confirmed[lid]
            if lid in image_hits:
                sim, via, rare = 1.0, "image", 0.0
            else:
                shared = fp.shingles & c.fingerprint.shingles
                rare = sum(c.fingerprint.rarity.get(s, 0.0) for s in shared)
                sim = jaccard(fp.shingles, c.fingerprint.shingles) if rare >= p.neighbor_min_rarity else 0.0
                via = "text"
            if sim >= p.neighbor_jaccard and sim > best.get(c.brand_id, (0.0, "", "", 0.0))[0]:
                best[c.brand_id] = (sim, lid, via, rare)
        for brand_id, (sim, lid, via, rare) in best.items():
            detail = {"removed_listing_id": lid, "similarity": round(sim, 3), "via": via}
            if via == "text":
                detail["shared_rarity"] = round(rare, 2)
            out.append(Evidence(brand_id, (Signal(SignalKind.FEEDBACK_NEIGHBOR, self._neighbor_score(sim), detail),)))
        return out

    def seller_removals(self, seller_id: str, brand_id: str) -> int:
        """Confirmed removals of this seller's listings for this brand (0 before any removal)."""
        return self._seller_brands.get((seller_id, brand_id), 0) if self._confirmed else 0

    def seller_evidence(self, listing: Listing, presented: Iterable[str]) -> list[Evidence]:
        """Raised suspicion on the listing's seller for each presented brand it had confirmed
        removals for."""
        if not self._confirmed:
            return []
        out: list[Evidence] = []
        for brand_id in presented:
            n = self._seller_brands.get((listing.seller_id, brand_id))
            if n:
                out.append(Evidence(brand_id, (Signal(SignalKind.SELLER, self.policy.seller_suspicion_score, {
                    "seller_id": listing.seller_id, "confirmed_removals_for_brand": n}),)))
        return out


# Images whose sellers are counted per operator; beyond it the oldest are forgotten (~100 B each).
MAX_IMAGE_SIGHTINGS = 1_000_000


def _verdict(ev: LedgerEvent) -> bool | None:
    """What the event says about the brand's accuracy: True a right removal, False a wrong one."""
    if ev.kind is LedgerKind.APPEAL_REJECTED:
        return True
    if ev.kind is LedgerKind.APPEAL_UPHELD:
        return False
    if ev.kind is LedgerKind.REMOVAL_REFUSED and ev.refusal is Refusal.NOT_PRESENTED:
        return False
    return None


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
                        model_version=model_version, event_time=ev.event_time_ms)

    def ledger(kind: LedgerKind, fp: Fingerprint | None = None, refusal: Refusal | None = None,
               reason: str = "") -> LedgerEvent:
        return LedgerEvent(kind, ev.listing_id, ev.brand_id, ev.event_time_ms, ev.actor, seller, fp,
                           refusal=refusal, reason=reason, actor_reason=ev.reason, judged_at_ms=now_ms)

    if ev.kind is FeedbackKind.BRAND_REMOVAL:
        if brand is None or brand.deleted:
            return None, ledger(LedgerKind.REMOVAL_REFUSED, refusal=Refusal.UNKNOWN_BRAND,
                                reason=f"brand {ev.brand_id} is not registered")
        if context is None:
            cap = state.policy.max_held_per_day
            if state.held_on_day(ev.brand_id, ev.event_time_ms) >= cap:
                return None, ledger(LedgerKind.REMOVAL_REFUSED, refusal=Refusal.HELD_CAP, reason=(
                    f"the scanner has not seen this listing and {cap} removals of unseen listings are "
                    f"already held for review for this brand today"))
            return (decision(Action.REVIEW, 0.5, {"held": "the scanner has not seen this listing"}),
                    ledger(LedgerKind.REMOVAL_HELD, reason="the scanner has not seen this listing"))
        if ev.brand_id not in context.presented:
            what = "other brands only (" + ", ".join(sorted(context.presented)) + ")" if context.presented \
                else "nothing of any brand"
            return None, ledger(LedgerKind.REMOVAL_REFUSED, refusal=Refusal.NOT_PRESENTED, reason=(
                f"the scanner saw this listing and it presents {what}, not {ev.brand_id}; "
                f"counted against the brand's accuracy"))
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
