"""Turn the evidence found for a listing into its decisions, one per brand it is flagged for.

Per brand: drop brands whose seller is authorized, combine the presentation signals
(noisy-OR), add the price-floor and seller facts, and map confidence to an action that
follows the brand's own `enforcement`, except for a confident near-duplicate of a listing the
brand owner removed (and nobody reinstated): that is taken down, as the owner asked. Every
brand the listing presents gets its own decision, so each brand owner sees their own signal;
`decide` is the strongest of them (the portal's "check a listing", evaluations of one answer).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from brand_signals.records import (
    Action,
    BrandReference,
    Decision,
    Evidence,
    Listing,
    Op,
    Signal,
    SignalKind,
)

# Confidence from which the brand's own enforcement applies as asked. Word-mark hits in the
# title or brand field after normalisation score >= 0.9 (see wordmarks.py); weaker evidence
# (a single fuzzy hit, a logo crop alone) lands between the two thresholds.
ENFORCE_SCORE = 0.8
# Confidence from which a finding is worth a human look at all; below it nothing is emitted
# (a decision is only written for flagged listings).
REVIEW_SCORE = 0.5
# A price under the brand's floor is not presentation by itself; it raises confidence in a
# presentation already found (genuine goods are not sold below min_price).
PRICE_BOOST = 0.5

PRESENTATION_KINDS = frozenset({
    SignalKind.TRADEMARK_TEXT, SignalKind.BRAND_FIELD, SignalKind.LOGO, SignalKind.OCR_TEXT,
    SignalKind.IMAGE_COPY, SignalKind.FEEDBACK_NEIGHBOR, SignalKind.BRAND_REMOVAL,
})


def combine(scores: Sequence[float]) -> float:
    """Noisy-OR of independent pieces of evidence."""
    miss = 1.0
    for s in scores:
        miss *= 1.0 - min(1.0, max(0.0, s))
    return 1.0 - miss


def action_for(score: float, enforcement: Action) -> Action | None:
    if score >= ENFORCE_SCORE:
        return enforcement
    if score >= REVIEW_SCORE:
        return Action.REVIEW if enforcement is Action.TAKEDOWN else enforcement
    return None


def _merge(evidence: Sequence[Evidence]) -> dict[str, list[Signal]]:
    merged: dict[str, list[Signal]] = {}
    for ev in evidence:
        merged.setdefault(ev.brand_id, []).extend(ev.signals)
    return merged


def decide(listing: Listing, evidence: Sequence[Evidence], brands: Mapping[str, BrandReference],
           now_ms: int, model_version: str | None = None) -> Decision | None:
    """The strongest decision for one listing, or None when it is not flagged for any brand."""
    flagged = decide_all(listing, evidence, brands, now_ms, model_version)
    return flagged[-1] if flagged else None


def decide_all(listing: Listing, evidence: Sequence[Evidence], brands: Mapping[str, BrandReference],
               now_ms: int, model_version: str | None = None) -> list[Decision]:
    """One decision per brand the listing is flagged for, the strongest last (on equal scores,
    the brand whose evidence came first), so a reader that keeps the last decision per listing
    keeps the strongest. Empty when it is flagged for none."""
    if listing.op is Op.DELETE:
        return []
    out: list[Decision] = []
    merged = _merge(evidence)
    # images that could not be scanned (refused uri, timeout, bomb) travel with a decision, so
    # a reviewer sees what was not looked at
    # (brand-less evidence is rare: most listings skip the scan)
    unscanned = tuple(s for s in merged[""] if s.kind is SignalKind.IMAGE_ERROR) if "" in merged else ()
    for brand_id, signals in merged.items():
        brand = brands.get(brand_id)
        if brand is None or brand.deleted or listing.seller_id in brand.authorized_sellers:
            continue
        presentation = [s for s in signals if s.kind in PRESENTATION_KINDS]
        if not presentation:
            continue
        score = combine([s.score for s in presentation])
        extra: list[Signal] = []
        floor = brand.min_price
        if floor is not None and listing.price is not None and listing.price.currency == floor.currency \
                and listing.price.amount < floor.amount:
            extra.append(Signal(SignalKind.PRICE, PRICE_BOOST, {
                "amount": listing.price.amount, "currency": listing.price.currency,
                "min_price": floor.amount}))
            score = combine([score, PRICE_BOOST])
        # Raised suspicion on a seller (confirmed removals for this brand) strengthens a
        # presentation already found, like the price floor; it never presents a brand alone.
        suspicion = [s for s in signals if s.kind is SignalKind.SELLER and s.score > 0]
        if suspicion:
            extra.extend(suspicion)
            score = combine([score] + [s.score for s in suspicion])
        else:
            extra.append(Signal(SignalKind.SELLER, 0.0, {"seller_id": listing.seller_id, "authorized": False}))
        action = action_for(score, brand.enforcement)
        if action is None:
            continue
        if any(s.kind is SignalKind.FEEDBACK_NEIGHBOR and s.score >= ENFORCE_SCORE for s in presentation):
            action = Action.TAKEDOWN
        candidate = Decision(
            listing_id=listing.listing_id, seller_id=listing.seller_id, brand_id=brand_id,
            action=action, score=score,
            signals=tuple(sorted(presentation, key=lambda s: -s.score)) + tuple(extra) + unscanned,
            decided_at=now_ms, brand_version=brand.version, model_version=model_version,
            event_time=listing.event_time_ms)
        out.append(candidate)
    if len(out) > 1:
        out = [d for _score, _i, d in sorted((d.score, -i, d) for i, d in enumerate(out))]
    return out
