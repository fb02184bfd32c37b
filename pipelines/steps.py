"""The per-batch work of the scan operator as plain Python (no pyflink import), so it is tested
without a JVM: raw records in (listing updates and feedback events), one output row per record
out: a decision, a pass, nothing, or a dead letter with its reason; feedback also yields a
ledger event."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Callable, Sequence

from brand_signals.catalog import Catalog
from brand_signals.contract import ContractError, feedback_from_obj, listing_from_obj, loads
from brand_signals.feedback import (ContextStore, FeedbackState, LedgerEvent, ListingContext, handle_feedback,
                                    ledger_json)
from brand_signals.records import Action, Decision, Listing, Op, SignalKind
from brand_signals.scanner import Scanner
from connectors.serde import Origin, clear_prefix, dead_letter, decision_json

LISTING = "listing"
FEEDBACK = "feedback"


class RowKind(enum.Enum):
    DECISION = "decision"   # flagged: payload is the decision JSON
    PASS = "pass"           # not flagged: payload is a `clear` prefix, used if it was flagged before
    NONE = "none"           # nothing to decide (a refused removal, a rejected appeal)
    DEAD = "dead"           # broke the contract: payload is the dead-letter JSON


@dataclass(frozen=True, slots=True)
class OutRow:
    kind: RowKind
    listing_id: str | None
    brand_id: str | None
    # What the per-listing transition compares: the action, marked when the brand removed it,
    # so a removal after an automatic takedown is still reported once.
    action: str | None
    payload: str
    ledger: str | None = None
    # On a decision: the `clear` prefix for a different brand the listing was flagged for before
    # (completed by the job with that brand; see `_superseded`).
    clear: str | None = None


@dataclass(frozen=True, slots=True)
class ScanContext:
    catalog: Catalog
    scanner: Scanner
    feedback: FeedbackState | None = None
    contexts: ContextStore | None = None
    # Applies a ledger event to the replicated feedback state (under its feed's lock).
    apply_ledger: Callable[[LedgerEvent], None] | None = None


def _transition_key(d: Decision) -> str:
    removed = any(s.kind is SignalKind.BRAND_REMOVAL for s in d.signals)
    return d.action.value + ("+removal" if removed else "")


def _parse(raw: bytes | None, origin: Origin, now_ms: int, parse) -> tuple[object | None, OutRow | None]:
    if raw is None:
        return None, OutRow(RowKind.DEAD, None, None, None, dead_letter("empty record (null value)", None, origin,
                                                                         now_ms))
    obj = None
    try:
        obj = loads(raw)
        return parse(obj), None
    except ContractError as e:
        lid = obj.get("listing_id") if isinstance(obj, dict) else None
        lid = lid if isinstance(lid, str) else None
        return None, OutRow(RowKind.DEAD, lid, None, None, dead_letter(str(e), raw, origin, now_ms, lid))


def scan_records(raws: Sequence[bytes | None], origins: Sequence[Origin], ctx: ScanContext, now_ms: int,
                 streams: Sequence[str] | None = None,
                 contexts_raw: Sequence[bytes | str | None] | None = None) -> list[OutRow]:
    """Rows in input order. Listings are scanned in batches; a feedback event is judged after
    every listing before it in the batch was scanned (it may remove one of them). With
    `contexts_raw` (the job), a feedback event is judged on the listing's latest update given
    beside it (None: never seen), matched again; without, on `ctx.contexts`."""
    rows: list[OutRow | None] = [None] * len(raws)
    ok_idx: list[int] = []
    listings: list[Listing] = []
    for i, raw in enumerate(raws):
        stream = streams[i] if streams is not None else LISTING
        if stream == FEEDBACK:
            ev, dead = _parse(raw, origins[i], now_ms, feedback_from_obj)
            if dead is None:
                _scan_pending(ok_idx, listings, rows, ctx, now_ms, origins)
            if dead is not None:
                rows[i] = dead
                continue
            context = _UNSET if contexts_raw is None else listing_context(contexts_raw[i], ev.listing_id, ctx)
            rows[i] = _feedback_row(ev, ctx, now_ms, origins[i], context)
            continue
        listing, dead = _parse(raw, origins[i], now_ms, listing_from_obj)
        if dead is not None:
            rows[i] = dead
            continue
        ok_idx.append(i)
        listings.append(listing)
    _scan_pending(ok_idx, listings, rows, ctx, now_ms, origins)
    return rows  # type: ignore[return-value]


def _scan_pending(ok_idx: list[int], listings: list[Listing], rows: list[OutRow | None], ctx: ScanContext,
                  now_ms: int, origins: Sequence[Origin]) -> None:
    """Scan the listings collected so far into their rows, and empty the lists. Every decision
    names the record it was made from (`source`: where the listing update was read)."""
    if not listings:
        return
    decisions = ctx.scanner.scan(ctx.catalog, listings, now_ms, ctx.feedback, ctx.contexts)
    for i, listing, d in zip(ok_idx, listings, decisions):
        if d is not None:
            d = dataclasses.replace(d, source=origins[i].to_json())
            rows[i] = OutRow(RowKind.DECISION, listing.listing_id, d.brand_id, _transition_key(d), decision_json(d),
                             clear=_superseded(listing.listing_id, listing.seller_id, now_ms, d, origins[i]))
        else:
            reason = "listing deleted" if listing.op is Op.DELETE else "no longer presents the brand"
            rows[i] = OutRow(RowKind.PASS, listing.listing_id, None, None,
                             clear_prefix(listing.listing_id, listing.seller_id, now_ms, reason,
                                          listing.event_time_ms, origins[i]))
    ok_idx.clear()
    listings.clear()


def _superseded(listing_id: str, seller_id: str, now_ms: int, d: Decision, origin: Origin) -> str:
    """The `clear` for the listing's previous brand, should the job find it was flagged for
    another one (a listing is reported for its strongest brand): written to `listing-status`
    only, so that the previous brand's entry there does not stay open."""
    return clear_prefix(listing_id, seller_id, now_ms, f"superseded: the listing is now reported for {d.brand_id}",
                        d.event_time, origin)


_UNSET = object()


def listing_context(raw: bytes | str | None, listing_id: str, ctx: ScanContext) -> ListingContext | None:
    """What a listing's latest update presents, matched now; None when there is none, it breaks
    the contract or names another listing than the Java side read from it (duplicate keys): a
    removal of the listing is then held for review."""
    if raw is None:
        return None
    try:
        listing = listing_from_obj(loads(raw))
    except ContractError:
        return None
    return ctx.scanner.context(ctx.catalog, listing, ctx.feedback) if listing.listing_id == listing_id else None


def _feedback_row(ev, ctx: ScanContext, now_ms: int, origin: Origin, context=_UNSET) -> OutRow:
    if ctx.feedback is None:
        raise RuntimeError("feedback events need a feedback state")
    if context is _UNSET:
        context = ctx.contexts.get(ev.listing_id) if ctx.contexts is not None else None
    decision, led = handle_feedback(ev, context, ctx.feedback, ctx.catalog.brands, now_ms, ctx.scanner.model_version)
    change = ctx.feedback.standing_change(led)
    if change:  # the brand is told on the ledger (`removals status`, the API's standing)
        led = dataclasses.replace(led, brand_status=change)
    (ctx.apply_ledger or ctx.feedback.apply)(led)
    ledger = ledger_json(led)
    if decision is None:
        return OutRow(RowKind.NONE, ev.listing_id, None, None, "", ledger)
    if decision.action is Action.CLEAR:
        prefix = clear_prefix(ev.listing_id, decision.seller_id, now_ms, f"appeal upheld: reinstated ({ev.actor})",
                              ev.event_time_ms, origin)
        return OutRow(RowKind.PASS, ev.listing_id, None, None, prefix, ledger)
    decision = dataclasses.replace(decision, source=origin.to_json())
    return OutRow(RowKind.DECISION, ev.listing_id, decision.brand_id, _transition_key(decision),
                  decision_json(decision), ledger,
                  clear=_superseded(ev.listing_id, decision.seller_id, now_ms, decision, origin))
