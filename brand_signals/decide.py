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

from brand_signals.records import Action, BrandReference, Decision, Evidence, Listing, Op, Signal
from brand_signals.signals import BUILTIN, Signals
from brand_signals.sources.price import PRICE_BOOST, price_evidence  # noqa: F401 (PRICE_BOOST: re-exported)
from brand_signals.sources.seller import seller_evidence

# Confidence from which the brand's own enforcement applies as asked. Word-mark hits in the
# title or brand field after normalisation score >= 0.9 (see wordmarks.py); weaker evidence
# (a single fuzzy hit, a logo crop alone) lands between the two thresholds.
ENFORCE_SCORE = 0.8
# Confidence from which a finding is worth a human look at all; below it nothing is emitted
# (a decision is only written for flagged listings).
REVIEW_SCORE = 0.5
# What each kind of signal does (presents, supports, a note) is declared by the signal sources
# (brand_signals.signals): `signals` below. The price floor and the seller's standing are
# sources too (brand_signals.sources.price, .seller).
PRESENTATION_KINDS = BUILTIN.presents


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
           now_ms: int, model_version: str | None = None, signals: Signals = BUILTIN,
           facts: bool = True) -> Decision | None:
    """The strongest decision for one listing, or None when it is not flagged for any brand
    (see `decide_all`)."""
    flagged = decide_all(listing, evidence, brands, now_ms, model_version, signals, facts)
    return flagged[-1] if flagged else None


def decide_all(listing: Listing, evidence: Sequence[Evidence], brands: Mapping[str, BrandReference],
               now_ms: int, model_version: str | None = None, signals: Signals = BUILTIN,
               facts: bool = True) -> list[Decision]:
    """One decision per brand the listing is flagged for, the strongest last (on equal scores,
    the brand whose evidence came first), so a reader that keeps the last decision per listing
    keeps the strongest. Empty when it is flagged for none.

    `signals`: what each kind means (the scanner's configured sources). `facts`: look up the
    price floor and seller facts here (a caller outside the Scanner); the Scanner passes False,
    its policy sources having added them for the whole batch."""
    if listing.op is Op.DELETE:
        return []
    if facts and evidence:
        evidence = list(evidence)
        evidence += price_evidence(listing, evidence, brands)
        evidence += seller_evidence(listing, evidence)
    out: list[Decision] = []
    merged = _merge(evidence)
    presents, supports = signals.presents, signals.supports
    # signals that only inform (images that could not be scanned: refused uri, timeout, bomb)
    # travel with a decision under brand "", so a reviewer sees what was not looked at
    # (brand-less evidence is rare: most listings skip the scan)
    unscanned = tuple(s for s in merged[""] if s.kind in signals.notes) if "" in merged else ()
    for brand_id, found in merged.items():
        brand = brands.get(brand_id)
        if brand is None or brand.deleted or listing.seller_id in brand.authorized_sellers:
            continue
        presentation = [s for s in found if s.kind in presents]
        if not presentation:
            continue
        score = combine([s.score for s in presentation])
        # Supporting facts (price floor, seller suspicion) strengthen a presentation already
        # found, one kind after another in the order they came; a zero-score fact only informs.
        extra = [s for s in found if s.kind in supports]
        by_kind: dict = {}
        for s in extra:
            if s.score > 0:
                by_kind.setdefault(s.kind, []).append(s.score)
        for scores in by_kind.values():
            score = combine([score] + scores)
        action = action_for(score, brand.enforcement)
        if action is None:
            continue
        if signals.takedown and any(s.kind in signals.takedown and s.score >= ENFORCE_SCORE for s in presentation):
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
