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
from brand_signals.feedback import ContextStore, FeedbackState, LedgerEvent, handle_feedback, ledger_json
from brand_signals.contract import MAX_RECORD_BYTES
from brand_signals.records import Action, Decision, Listing, Op, SignalKind
from brand_signals.retro import RESCAN_ENVELOPE_BYTES, Rescan, parse_rescan
from brand_signals.scanner import Scanner
from connectors.serde import Origin, clear_prefix, dead_letter, decision_json

LISTING = "listing"
FEEDBACK = "feedback"
# A re-check of a live listing after a brand change (connectors/retro_worker.py), decided like
# the listing; `rescan-stale` when the job has read a newer record of the listing since (the
# keyed step compares offsets): nothing to do.
RESCAN = "rescan"
RESCAN_STALE = "rescan-stale"


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


def _parse(raw: bytes | None, origin: Origin, now_ms: int, parse,
           limit: int = MAX_RECORD_BYTES) -> tuple[object | None, OutRow | None]:
    if raw is None:
        return None, OutRow(RowKind.DEAD, None, None, None, dead_letter("empty record (null value)", None, origin,
                                                                         now_ms))
    obj = None
    try:
        obj = loads(raw, limit)
        return parse(obj), None
    except ContractError as e:
        lid = obj.get("listing_id") if isinstance(obj, dict) else None
        lid = lid if isinstance(lid, str) else None
        return None, OutRow(RowKind.DEAD, lid, None, None, dead_letter(str(e), raw, origin, now_ms, lid))


def _rescan_from_obj(obj: dict) -> tuple[Rescan, Listing]:
    try:
        r = parse_rescan(obj)
    except ValueError as e:
        raise ContractError(f"rescan {e}") from None
    try:
        return r, listing_from_obj(r.listing)
    except ContractError as e:
        raise ContractError(f"rescan listing.{e}") from None


def rescan_needs(raws: Sequence[bytes | None], streams: Sequence[str]) -> dict[str, int]:
    """The brand versions the rescans of a batch were made for (the newest per brand): the
    catalogue must include them before they are scanned."""
    need: dict[str, int] = {}
    for raw, stream in zip(raws, streams):
        if stream == RESCAN and raw is not None:
            try:
                r, _ = _rescan_from_obj(loads(raw, MAX_RECORD_BYTES + RESCAN_ENVELOPE_BYTES))
            except ContractError:
                continue
            need[r.brand_id] = max(need.get(r.brand_id, 0), r.brand_version)
    return need


def scan_records(raws: Sequence[bytes | None], origins: Sequence[Origin], ctx: ScanContext, now_ms: int,
                 streams: Sequence[str] | None = None) -> list[OutRow]:
    """Rows in input order. Listings are scanned in batches; a feedback event is judged after
    every listing before it in the batch was scanned (it may remove one of them)."""
    rows: list[OutRow | None] = [None] * len(raws)
    ok_idx: list[int] = []
    listings: list[Listing] = []
    rescans: dict[int, Rescan] = {}
    for i, raw in enumerate(raws):
        stream = streams[i] if streams is not None else LISTING
        if stream == RESCAN_STALE:
            rows[i] = OutRow(RowKind.NONE, None, None, None, "")
            continue
        if stream == RESCAN:
            parsed, dead = _parse(raw, origins[i], now_ms, _rescan_from_obj, MAX_RECORD_BYTES + RESCAN_ENVELOPE_BYTES)
            if dead is not None:
                rows[i] = dead
                continue
            r, listing = parsed
            if not ctx.catalog.has_version(r.brand_id, r.brand_version):
                rows[i] = OutRow(RowKind.DEAD, listing.listing_id, None, None, dead_letter(
                    f"rescan for brand {r.brand_id} v{r.brand_version}: the scanner's catalogue does not have "
                    f"that version yet (after waiting); re-send it once the brand is published", raw, origins[i],
                    now_ms, listing.listing_id))
                continue
            rescans[i] = r
            ok_idx.append(i)
            listings.append(listing)
            continue
        if stream == FEEDBACK:
            ev, dead = _parse(raw, origins[i], now_ms, feedback_from_obj)
            if dead is None:
                _scan_pending(ok_idx, listings, rows, ctx, now_ms, origins, rescans)
            rows[i] = dead or _feedback_row(ev, ctx, now_ms, origins[i])
            continue
        listing, dead = _parse(raw, origins[i], now_ms, listing_from_obj)
        if dead is not None:
            rows[i] = dead
            continue
        ok_idx.append(i)
        listings.append(listing)
    _scan_pending(ok_idx, listings, rows, ctx, now_ms, origins, rescans)
    return rows  # type: ignore[return-value]


def _scan_pending(ok_idx: list[int], listings: list[Listing], rows: list[OutRow | None], ctx: ScanContext,
                  now_ms: int, origins: Sequence[Origin], rescans: dict[int, Rescan] | None = None) -> None:
    """Scan the listings collected so far into their rows, and empty the lists. Every decision
    names the record it was made from (`source`: where the listing update was read; for a
    rescan, the listing record it re-checked, and `rescan` the brand change)."""
    if not listings:
        return
    decisions = ctx.scanner.scan(ctx.catalog, listings, now_ms, ctx.feedback, ctx.contexts)
    for i, listing, d in zip(ok_idx, listings, decisions):
        r = rescans.get(i) if rescans else None
        origin = origins[i] if r is None else Origin(r.source["topic"], r.source["partition"], r.source["offset"])
        scope = None if r is None else {"brand_id": r.brand_id, "brand_version": r.brand_version, "reason": r.reason}
        if d is not None:
            d = dataclasses.replace(d, source=origin.to_json(), rescan=scope)
            rows[i] = OutRow(RowKind.DECISION, listing.listing_id, d.brand_id, _transition_key(d), decision_json(d),
                             clear=_superseded(listing.listing_id, listing.seller_id, now_ms, d, origin))
        else:
            if r is not None:
                reason = f"{r.reason}: re-checked after brand {r.brand_id} v{r.brand_version}"
            else:
                reason = "listing deleted" if listing.op is Op.DELETE else "no longer presents the brand"
            rows[i] = OutRow(RowKind.PASS, listing.listing_id, None, None,
                             clear_prefix(listing.listing_id, listing.seller_id, now_ms, reason,
                                          listing.event_time_ms, origin, scope))
    ok_idx.clear()
    listings.clear()
    if rescans:
        rescans.clear()


def _superseded(listing_id: str, seller_id: str, now_ms: int, d: Decision, origin: Origin) -> str:
    """The `clear` for the listing's previous brand, should the job find it was flagged for
    another one (a listing is reported for its strongest brand): written to `listing-status`
    only, so that the previous brand's entry there does not stay open."""
    return clear_prefix(listing_id, seller_id, now_ms, f"superseded: the listing is now reported for {d.brand_id}",
                        d.event_time, origin)


def _feedback_row(ev, ctx: ScanContext, now_ms: int, origin: Origin) -> OutRow:
    if ctx.feedback is None:
        raise RuntimeError("feedback events need a feedback state")
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
