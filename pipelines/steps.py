"""The per-batch work of the scan operator as plain Python (no pyflink import), so it is tested
without a JVM: raw records in (listing updates and feedback events), one output row per record
out: a listing's decisions (one per brand it is flagged for), a pass, nothing, or a dead letter
with its reason; feedback also yields a ledger event."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Callable, Sequence

import orjson

from brand_signals.catalog import Catalog
from brand_signals.contract import ContractError, feedback_from_obj, listing_from_obj, loads
from brand_signals.contract import MAX_RECORD_BYTES
from brand_signals.feedback.context import ContextStore, ListingContext
from brand_signals.feedback.ledger import LedgerEvent, ledger_json
from brand_signals.feedback.state import FeedbackState, handle_feedback
from brand_signals.records import Action, Decision, Listing, Op, SignalKind
from brand_signals.retro import RESCAN_ENVELOPE_BYTES, Rescan, parse_rescan
from brand_signals.scanner import Scanner
from connectors.serde import Origin, dead_letter

LISTING = "listing"
FEEDBACK = "feedback"
# A re-check of a live listing after a brand change (connectors/retro_worker.py), decided like
# the listing; `rescan-stale` when the job has read a newer record of the listing since (the
# keyed step compares offsets): nothing to do.
RESCAN = "rescan"
RESCAN_STALE = "rescan-stale"


class RowKind(enum.Enum):
    DECISION = "decision"   # flagged for at least one brand: `flags` holds one decision per brand
    PASS = "pass"           # flagged for no brand now (a listing scan), or a brand's flag lifted
    NONE = "none"           # nothing to decide (a refused removal, a rejected appeal)
    DEAD = "dead"           # broke the contract: payload is the dead-letter JSON


@dataclass(frozen=True, slots=True)
class Flag:
    """What one record says about one brand: flagged, with `decision` the decision JSON and
    `removed` set when it rests on the brand owner's removal (what the job compares besides the
    action, so a removal after an automatic takedown is still reported once); or `Action.CLEAR`
    without a decision: the brand's flag is lifted (an upheld appeal)."""

    brand_id: str
    action: Action
    removed: bool = False
    decision: str | None = None


@dataclass(frozen=True, slots=True)
class OutRow:
    kind: RowKind
    listing_id: str | None
    flags: tuple[Flag, ...] = ()
    # A listing scan states every brand the listing is flagged for: a brand flagged before and
    # missing from `flags` is cleared (the job keeps which brands a listing was flagged for).
    sweep: bool = False
    # What a `clear` caused by this record says: the listing's seller, the record's event time
    # and where it was read, why, and when it was decided.
    seller_id: str | None = None
    event_time: int | None = None
    origin: Origin | None = None
    reason: str | None = None
    decided_at: int | None = None
    payload: str | None = None    # DEAD: the dead-letter JSON
    ledger: str | None = None
    # A listing update (not a rescan) in which no signal source found any evidence: its price
    # could not have changed its decision (the job's price loop, pipelines/java RepostStop).
    quiet: bool = False

    @property
    def flagged(self) -> tuple[str, ...]:
        """The brands this record flags the listing for."""
        return tuple(f.brand_id for f in self.flags if f.action is not Action.CLEAR)

    @property
    def state_key(self) -> str | None:
        """A listing scan's whole per-brand state as one canonical string (brand, action and
        whether it rests on a removal, by brand; "" when flagged for none); None for a record
        that states one brand only (feedback). Two listing scans in a row with the same key
        cannot change any brand's state: the job drops the second before its per-brand steps."""
        if not self.sweep:
            return None
        return "\n".join(sorted(f"{f.brand_id}\t{f.action.value}\t{int(f.removed)}" for f in self.flags))


@dataclass(frozen=True, slots=True)
class ScanContext:
    catalog: Catalog
    scanner: Scanner
    feedback: FeedbackState | None = None
    contexts: ContextStore | None = None
    # Applies a ledger event to the replicated feedback state (under its feed's lock).
    apply_ledger: Callable[[LedgerEvent], None] | None = None


def _flag(d: Decision, origin: Origin, rescan: dict | None = None) -> Flag:
    """The decision as written, made from the record at `origin` (and the re-check `rescan`):
    the JSON of `dataclasses.replace(d, source=..., rescan=...)`, key order included, without
    the copy (a flagged listing's decisions are most of its cost past matching)."""
    out = d.to_json()
    out.pop("rescan", None)
    out["source"] = origin.to_json()
    if rescan is not None:
        out["rescan"] = dict(rescan)
    return Flag(d.brand_id, d.action, any(s.kind is SignalKind.BRAND_REMOVAL for s in d.signals),
                orjson.dumps(out).decode())


def _parse(raw: bytes | None, origin: Origin, now_ms: int, parse,
           limit: int = MAX_RECORD_BYTES) -> tuple[object | None, OutRow | None]:
    if raw is None:
        return None, OutRow(RowKind.DEAD, None, payload=dead_letter("empty record (null value)", None, origin, now_ms))
    obj = None
    try:
        obj = loads(raw, limit)
        return parse(obj), None
    except ContractError as e:
        lid = obj.get("listing_id") if isinstance(obj, dict) else None
        lid = lid if isinstance(lid, str) else None
        return None, OutRow(RowKind.DEAD, lid, payload=dead_letter(str(e), raw, origin, now_ms, lid))


def _read_apart(key: str | None, listing_id: str, raw: bytes | None, origin: Origin, now_ms: int) -> OutRow:
    """A record whose listing_id the job's keyed steps read otherwise than the scan (duplicate
    keys, or JSON their parser refuses and this one reads: nesting or number lengths beyond its
    limits). Scanned, it would change a listing whose other updates the keyed steps order and
    compare under another key (an unchanged re-post after it would be taken as unchanged)."""
    seen = "could not read a listing_id" if key is None else f"read listing_id {key[:128]!r}"
    return OutRow(RowKind.DEAD, listing_id, payload=dead_letter(
        f"listing_id reads apart: the job's keyed step {seen}, the scan {listing_id!r} (duplicate keys, "
        "or JSON beyond the keyed step's parser limits); refused so that every update of a listing is "
        "keyed alike", raw, origin, now_ms, listing_id))


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
                 streams: Sequence[str] | None = None,
                 contexts_raw: Sequence[bytes | str | None] | None = None,
                 keys: Sequence[str | None] | None = None) -> list[OutRow]:
    """Rows in input order. Listings are scanned in batches; a feedback event is judged after
    every listing before it in the batch was scanned (it may remove one of them). With
    `contexts_raw` (the job), a feedback event is judged on the listing's latest update given
    beside it (None: never seen), matched again; without, on `ctx.contexts`. `keys` (the job):
    the listing_id the job's keyed steps read from each record (None: they could not read one);
    a listing update or rescan whose listing_id reads otherwise here is dead-lettered."""
    rows: list[OutRow | None] = [None] * len(raws)
    ok_idx: list[int] = []
    listings: list[Listing] = []
    rescans: dict[int, Rescan] = {}
    for i, raw in enumerate(raws):
        stream = streams[i] if streams is not None else LISTING
        if stream == RESCAN_STALE:
            rows[i] = OutRow(RowKind.NONE, None)
            continue
        if stream == RESCAN:
            parsed, dead = _parse(raw, origins[i], now_ms, _rescan_from_obj, MAX_RECORD_BYTES + RESCAN_ENVELOPE_BYTES)
            if dead is not None:
                rows[i] = dead
                continue
            r, listing = parsed
            if keys is not None and keys[i] != listing.listing_id:
                rows[i] = _read_apart(keys[i], listing.listing_id, raw, origins[i], now_ms)
                continue
            if not ctx.catalog.has_version(r.brand_id, r.brand_version):
                rows[i] = OutRow(RowKind.DEAD, listing.listing_id, payload=dead_letter(
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
            if dead is not None:
                rows[i] = dead
                continue
            context = _UNSET if contexts_raw is None else listing_context(contexts_raw[i], ev.listing_id, ctx)
            rows[i] = _feedback_row(ev, ctx, now_ms, origins[i], context)
            continue
        listing, dead = _parse(raw, origins[i], now_ms, listing_from_obj)
        if dead is None and keys is not None and keys[i] != listing.listing_id:
            dead = _read_apart(keys[i], listing.listing_id, raw, origins[i], now_ms)
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
    quiet: list[bool] = []
    decided = ctx.scanner.scan_all(ctx.catalog, listings, now_ms, ctx.feedback, ctx.contexts, quiet)
    for i, listing, ds, q in zip(ok_idx, listings, decided, quiet):
        r = rescans.get(i) if rescans else None
        origin = origins[i] if r is None else Origin(r.source["topic"], r.source["partition"], r.source["offset"])
        scope = None if r is None else {"brand_id": r.brand_id, "brand_version": r.brand_version, "reason": r.reason}
        if r is not None:
            reason = f"{r.reason}: re-checked after brand {r.brand_id} v{r.brand_version}"
        else:
            reason = "listing deleted" if listing.op is Op.DELETE else "no longer presents the brand"
        rows[i] = OutRow(RowKind.DECISION if ds else RowKind.PASS, listing.listing_id,
                         tuple(_flag(d, origin, scope) for d in ds), sweep=True, seller_id=listing.seller_id,
                         event_time=listing.event_time_ms, origin=origin, reason=reason, decided_at=now_ms,
                         quiet=q and r is None)
    ok_idx.clear()
    listings.clear()
    if rescans:
        rescans.clear()


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
        return OutRow(RowKind.NONE, ev.listing_id, ledger=ledger)
    if decision.action is Action.CLEAR:   # that brand's flag only: the listing's others stay
        return OutRow(RowKind.PASS, ev.listing_id, (Flag(ev.brand_id, Action.CLEAR),), seller_id=decision.seller_id,
                      event_time=ev.event_time_ms, origin=origin, reason=f"appeal upheld: reinstated ({ev.actor})",
                      decided_at=now_ms, ledger=ledger)
    return OutRow(RowKind.DECISION, ev.listing_id, (_flag(decision, origin),), ledger=ledger)
