"""The feedback ledger's records: the outcome of every removal and appeal (`LedgerEvent`, its
`LedgerKind` and, for a refusal, its `Refusal`) and the operator, owner and account actions
recorded beside them (`action_record`). The ledger is replayed into every operator's
`FeedbackState`; these are its JSON forms."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from brand_signals.feedback.fingerprints import Fingerprint


class LedgerKind(enum.Enum):
    REMOVAL_ACCEPTED = "removal_accepted"
    REMOVAL_DEMOTED = "removal_demoted"     # accepted as a review: the brand is suspended
    REMOVAL_HELD = "removal_held"           # the scanner never saw the listing: a human decides
    REMOVAL_REFUSED = "removal_refused"     # seen without the brand, unknown brand, or over the cap
    APPEAL_UPHELD = "appeal_upheld"
    APPEAL_REJECTED = "appeal_rejected"


# Operator, owner and account actions on the ledger beside the removal outcomes: who (actor),
# when (event_time), what (kind, brand_id or account, detail). The feedback state ignores them.
ACTION_KINDS = frozenset({
    "brand_registered", "brand_updated", "brand_withdrawn", "brand_submitted", "brand_approved",
    "brand_rejected", "privilege_granted", "privilege_revoked", "privilege_requested",
    "account_created", "account_rotated", "account_revoked",
})


def action_record(kind: str, actor: str, at_ms: int, *, brand_id: str | None = None, account: str | None = None,
                  detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ledger record of an action (not a removal outcome); see the ledger schema."""
    if kind not in ACTION_KINDS:
        raise ValueError(f"not a ledger action kind: {kind!r}")
    d: dict[str, Any] = {"kind": kind, "actor": actor, "event_time": at_ms}
    if brand_id is not None:
        d["brand_id"] = brand_id
    if account is not None:
        d["account"] = account
    if detail:
        d["detail"] = dict(detail)
    return d


def outcome_from_json(d: Mapping[str, Any]) -> "LedgerEvent | None":
    """The removal or appeal outcome a ledger record holds, or None for an action record."""
    if d.get("kind") in ACTION_KINDS:
        return None
    return LedgerEvent.from_json(d)


class Refusal(enum.Enum):
    """Why a removal was refused (`reason` on the ledger); only NOT_PRESENTED counts against
    the brand: it claimed a listing the scanner saw without the brand."""

    NOT_PRESENTED = "not_presented"
    UNKNOWN_BRAND = "unknown_brand"
    HELD_CAP = "held_cap"


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
    refusal: Refusal | None = None      # why a removal was refused
    reason: str = ""                   # in words: why it was refused or held
    actor_reason: str = ""             # what the actor (owner, reviewer) gave as the reason
    judged_at_ms: int = 0              # when the scanner judged it (processing time)

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
        if self.refusal is not None:
            d["refusal"] = self.refusal.value
        for name in ("reason", "actor_reason"):
            if getattr(self, name):
                d[name] = getattr(self, name)
        if self.judged_at_ms:
            d["judged_at"] = self.judged_at_ms
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "LedgerEvent":
        fp = d.get("fingerprint")
        refusal = d.get("refusal")
        return cls(LedgerKind(d["kind"]), d["listing_id"], d["brand_id"], int(d["event_time"]), d.get("actor", ""),
                   d.get("seller_id", ""), Fingerprint.from_json(fp) if fp else None, d.get("brand_status", ""),
                   Refusal(refusal) if refusal else None, d.get("reason", ""), d.get("actor_reason", ""),
                   int(d.get("judged_at", 0)))


def ledger_json(ev: LedgerEvent) -> str:
    return orjson.dumps(ev.to_json()).decode()
