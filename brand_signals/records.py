"""The typed records that flow through the scanner: listings, brand references, signals,
decisions and feedback events. Parsing from JSON lives in `brand_signals.contract`; these
classes hold already-validated values only."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping


class Op(enum.Enum):
    UPSERT = "upsert"
    DELETE = "delete"


class Action(enum.Enum):
    """What a decision asks the marketplace to do, strongest first."""

    TAKEDOWN = "takedown"
    REVIEW = "review"
    NOTIFY = "notify"
    CLEAR = "clear"


class SignalKind(enum.Enum):
    TRADEMARK_TEXT = "trademark_text"
    BRAND_FIELD = "brand_field"
    LOGO = "logo"
    OCR_TEXT = "ocr_text"
    IMAGE_COPY = "image_copy"
    PRICE = "price"
    SELLER = "seller"
    BRAND_REMOVAL = "brand_removal"
    FEEDBACK_NEIGHBOR = "feedback_neighbor"
    IMAGE_ERROR = "image_error"


class FeedbackKind(enum.Enum):
    BRAND_REMOVAL = "brand_removal"
    APPEAL_UPHELD = "appeal_upheld"
    APPEAL_REJECTED = "appeal_rejected"


@dataclass(frozen=True, slots=True)
class Money:
    amount: float
    currency: str


@dataclass(frozen=True, slots=True)
class ImageRef:
    uri: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    listing_id: str
    seller_id: str
    event_time_ms: int
    op: Op = Op.UPSERT
    title: str = ""
    brand: str = ""
    description: str = ""
    bullet_points: tuple[str, ...] = ()
    category: str = ""
    price: Money | None = None
    images: tuple[ImageRef, ...] = ()
    marketplace: str = ""


@dataclass(frozen=True, slots=True)
class BrandReference:
    brand_id: str
    version: int
    name: str = ""
    trademarks: tuple[str, ...] = ()
    logos: tuple[ImageRef, ...] = ()
    product_images: tuple[ImageRef, ...] = ()
    categories: tuple[str, ...] = ()
    authorized_sellers: frozenset[str] = frozenset()
    min_price: Money | None = None
    enforcement: Action = Action.NOTIFY
    deleted: bool = False


_ROUND4: dict[float, float] = {}
_ROUND4_MAX = 4096


def round4(x: float) -> float:
    """`round(x, 4)`, remembered for positive floats: scores come from a small set of values
    and every flagged listing writes several, while a float's round to digits formats it in
    full (~1.5 µs each, the largest single cost of writing a decision). A float zero (a fact
    that only informs scores 0) is its own rounding, sign kept; anything else is rounded each
    time (an int 1 and a float 1.0 would share an entry)."""
    if type(x) is float:
        if x > 0:
            r = _ROUND4.get(x)
            if r is None:
                if len(_ROUND4) >= _ROUND4_MAX:
                    _ROUND4.clear()
                r = _ROUND4[x] = round(x, 4)
            return r
        if x == 0:
            return x
    return round(x, 4)


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence that a listing presents a brand (or a fact that weighs on it)."""

    kind: SignalKind
    score: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # `_value_`, the member's value as a plain attribute: `.value` is a descriptor call, a
        # measurable share of a flagged listing's cost when every decision is written out
        return {"kind": self.kind._value_, "score": round4(self.score), "detail": dict(self.detail)}


@dataclass(frozen=True, slots=True)
class Evidence:
    """Signals that one source found for one brand on one listing."""

    brand_id: str
    signals: tuple[Signal, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    listing_id: str
    seller_id: str
    brand_id: str
    action: Action
    score: float
    signals: tuple[Signal, ...]
    decided_at: int
    brand_version: int | None = None
    model_version: str | None = None
    # The record the decision was made from (project fields beside the contract's): its event
    # time (epoch ms; a listing's or a feedback event's `event_time`) and where it was read,
    # {topic, partition, offset} on Kafka or {file, line} in file mode.
    event_time: int | None = None
    source: Mapping[str, Any] | None = None
    # Made from a retroactive re-check (a rescan after a brand change): {brand_id,
    # brand_version, reason} of that change; `source` is then the listing record re-checked.
    rescan: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "listing_id": self.listing_id,
            "seller_id": self.seller_id,
            "brand_id": self.brand_id,
            "action": self.action._value_,
            "score": round4(min(1.0, max(0.0, self.score))),
            "signals": [s.to_json() for s in self.signals],
            "decided_at": self.decided_at,
        }
        if self.brand_version is not None:
            out["brand_version"] = self.brand_version
        if self.model_version is not None:
            out["model_version"] = self.model_version
        if self.event_time is not None:
            out["event_time"] = self.event_time
        if self.source is not None:
            out["source"] = dict(self.source)
        if self.rescan is not None:
            out["rescan"] = dict(self.rescan)
        return out


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    kind: FeedbackKind
    listing_id: str
    brand_id: str
    event_time_ms: int
    actor: str = ""
    reason: str = ""
