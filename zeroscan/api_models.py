"""What the brand owners' API answers, as typed models: the OpenAPI document describes these
fields and the error codes of each route (`ERRORS`)."""
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error codes, each an `ErrorOut`."""
    return {c: {"model": ErrorOut, "description": ERRORS[c]} for c in codes}


ERRORS = {
    400: "bad request (a malformed Content-Length)",
    401: "missing or invalid API token",
    403: "the token's account may not do this (another owner's brand, another role, a privilege not granted)",
    404: "brand not registered",
    409: "version not newer, already withdrawn, or not pending",
    413: "request body above the size limit",
    415: "unsupported content type",
    422: "the body breaks the contract, or an image is refused (format, size, pixels, budget)",
    429: "rate limit exceeded for this token (Retry-After says when to try again)",
    503: "the registry or the brands topic is unavailable: retry",
}
AUTH = (401, 429)


class HealthOut(BaseModel):
    status: Literal["ok"]


class EntryOut(BaseModel):
    """A brand's registry entry as its owner or an operator sees it."""

    brand: dict[str, Any] = Field(description="the latest submission, contract JSON (brand.schema.json)")
    owner: str
    updated_at_ms: int
    status: Literal["approved", "pending", "rejected"]
    published: dict[str, Any] | None = Field(description="what the brands topic carries (None: never approved)")
    concerns: list[str] = Field(description="reasons for the operator to look at the submission")
    grants: list[str] = Field(description="privileges granted: takedown, self_service_removal")
    requests: list[str] = Field(description="privileges requested by the owner")
    note: str = Field(description="the operator's reason for a rejection")


class BrandsOut(BaseModel):
    brands: list[EntryOut]


class PendingOut(BaseModel):
    pending: list[EntryOut]


class AuditEntryOut(BaseModel):
    at_ms: int
    actor: str
    brand_id: str
    action: str
    detail: dict[str, Any]


class AuditOut(BaseModel):
    audit: list[AuditEntryOut]


class FeedbackEventOut(BaseModel):
    """The feedback event as written to the feedback topic (feedback.schema.json)."""

    kind: Literal["brand_removal", "appeal_upheld", "appeal_rejected"]
    listing_id: str
    brand_id: str
    event_time: int
    actor: str | None = None
    reason: str | None = None


class SubmittedOut(BaseModel):
    submitted: FeedbackEventOut


class SignalsOut(BaseModel):
    brand_id: str
    signals: list[dict[str, Any]] = Field(description="the latest decision of each listing flagged for the brand")


class NotificationOut(BaseModel):
    event_time: int
    self_service: Literal["suspended", "reinstated"]


class TrendPointOut(BaseModel):
    event_time: int
    accuracy: float
    decided: int


class StandingOut(BaseModel):
    brand_id: str
    accuracy: float | None = Field(description="confirmed / decided removals in the window; None while none is decided")
    decided_removals: int
    accuracy_bar: float
    window_days: int
    self_service_suspended: bool
    removals: dict[str, int] = Field(description="counts by ledger outcome")
    notifications: list[NotificationOut]
    trend: list[TrendPointOut]
