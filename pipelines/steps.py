"""The per-batch work of the scan operator as plain Python (no pyflink import), so it is tested
without a JVM: raw records in, one output row per record out (a decision, a pass, or a dead
letter with its reason)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

from brand_signals.catalog import Catalog
from brand_signals.contract import ContractError, listing_from_obj, loads
from brand_signals.records import Listing, Op
from brand_signals.scanner import Scanner
from connectors.serde import Origin, clear_prefix, dead_letter, decision_json


class RowKind(enum.Enum):
    DECISION = "decision"   # flagged: payload is the decision JSON
    PASS = "pass"           # not flagged: payload is a `clear` prefix, used if it was flagged before
    DEAD = "dead"           # broke the contract: payload is the dead-letter JSON


@dataclass(frozen=True, slots=True)
class OutRow:
    kind: RowKind
    listing_id: str | None
    brand_id: str | None
    action: str | None
    payload: str


def scan_records(raws: Sequence[bytes | None], origins: Sequence[Origin], catalog: Catalog,
                 scanner: Scanner, now_ms: int) -> list[OutRow]:
    rows: list[OutRow | None] = [None] * len(raws)
    ok_idx: list[int] = []
    listings: list[Listing] = []
    for i, raw in enumerate(raws):
        if raw is None:
            rows[i] = OutRow(RowKind.DEAD, None, None, None,
                             dead_letter("empty record (null value)", None, origins[i], now_ms))
            continue
        obj = None
        try:
            obj = loads(raw)
            listing = listing_from_obj(obj)
        except ContractError as e:
            lid = obj.get("listing_id") if isinstance(obj, dict) else None
            rows[i] = OutRow(RowKind.DEAD, lid if isinstance(lid, str) else None, None, None,
                             dead_letter(str(e), raw, origins[i], now_ms,
                                         lid if isinstance(lid, str) else None))
            continue
        ok_idx.append(i)
        listings.append(listing)
    decisions = scanner.scan(catalog, listings, now_ms)
    for i, listing, d in zip(ok_idx, listings, decisions):
        if d is not None:
            rows[i] = OutRow(RowKind.DECISION, listing.listing_id, d.brand_id, d.action.value, decision_json(d))
        else:
            reason = "listing deleted" if listing.op is Op.DELETE else "no longer presents the brand"
            rows[i] = OutRow(RowKind.PASS, listing.listing_id, None, None, clear_prefix(listing, now_ms, reason))
    return rows  # type: ignore[return-value]
