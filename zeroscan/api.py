"""The HTTP API of zeroscan's accounts, by role. Owners register, update, withdraw and read their
own brands (with logos and product images), remove listings (when granted), and read their
signals and standing; their submissions wait for an operator. Operators list pending
submissions with the reasons to look at, approve (granting privileges) or reject them with a
reason. Reviewers decide appeals. Bearer tokens per account (stored hashed), per-token rate
limits, request size limits, Prometheus metrics. `create_app` builds it from its routers (ops, brands, feedback,
review), whose answers are the typed models of `zeroscan.api_models`; `zeroscan api serve` runs it.

No `from __future__ import annotations` here: FastAPI reads the route signatures, whose
dependency aliases are local to `create_app`."""

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.routing import Match

from brand_signals.catalog import StaleVersionError
from brand_signals.contract import MAX_RECORD_BYTES, ContractError, brand_from_obj, brand_to_obj, loads
from brand_signals.records import FeedbackEvent, FeedbackKind, ImageRef
from brand_signals.registry import (
    Actor,
    AlreadyWithdrawnError,
    BrandEntry,
    ImageBudgetError,
    BrandNotFoundError,
    BrandRegistry,
    ChangeKind,
    NotOwnerError,
    NotPendingError,
    Privilege,
    PublishFailedError,
    RegistryLockedError,
)
from connectors.image_store import ImageRejected, ImageStore, probe
from zeroscan.accounts import Account, AccountStore, Role, hash_token
from zeroscan.api_models import (
    AUTH,
    AuditOut,
    BrandsOut,
    EntryOut,
    HealthOut,
    PendingOut,
    SignalsOut,
    StandingOut,
    SubmittedOut,
    errors,
)
from zeroscan.portal import PortalParts, portal_router
from zeroscan.rate_limit import TokenBucket
from zeroscan.portal.check import ListingCheck

log = logging.getLogger(__name__)

# A brand's JSON part: the contract allows 8 MiB (1,000 product images), but through the API a
# brand is sent with its files, so 1 MiB of JSON (thousands of image refs) is plenty.
MAX_BRAND_JSON_BYTES = MAX_RECORD_BYTES
# One request: a brand with its logos and a batch of product images (10 MiB each at most).
MAX_REQUEST_BYTES = 64 << 20
MAX_FILES_PER_REQUEST = 100
# 60 changes in a burst, then one a second: far above an owner's editing pace, far below what
# would let one token flood the topic or the image store.
RATE_BURST = 60
RATE_PER_S = 1.0
# Request latency buckets, from a cached read (~1 ms) to a 64 MiB upload with a broker round trip.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RemovalRequest(BaseModel):
    listing_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=2000)


class ApprovalRequest(BaseModel):
    grant: list[Privilege] = Field(default_factory=list, description="privileges granted with the approval")


class RejectionRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class PrivilegeChange(BaseModel):
    privilege: Privilege
    granted: bool = True


class PrivilegeRequest(BaseModel):
    privilege: Privilege


class AppealDecision(BaseModel):
    brand_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    listing_id: str = Field(min_length=1, max_length=128)
    upheld: bool = Field(description="true: the removal was wrong, reinstate the listing")
    reason: str = Field(default="", max_length=2000)


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_brand_json_bytes: int = MAX_BRAND_JSON_BYTES
    max_files: int = MAX_FILES_PER_REQUEST
    rate_burst: int = RATE_BURST
    rate_per_s: float = RATE_PER_S


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body above the {limit}-byte limit")


class BodySizeLimit:
    """ASGI middleware: 413 for a declared or streamed body above the limit, before it is read."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            detail = f"request body above the {self.max_bytes}-byte limit" if declared.isdigit() else \
                "bad Content-Length"
            resp = JSONResponse({"detail": detail}, status_code=413 if declared.isdigit() else 400,
                                headers={"Connection": "close"})
            await resp(scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return msg

        await self.app(scope, limited, send)


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    requests: Counter
    latency: Histogram
    auth_failures: Counter
    rate_limited: Counter


class RequestMetrics:
    """ASGI middleware: requests by route template, method and status, and their latency."""

    def __init__(self, app, metrics: ApiMetrics, routes: list) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    def _route(self, scope) -> str:
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return getattr(route, "path", "unmatched")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def tracking(msg):
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, tracking)
        finally:
            route, method = self._route(scope), scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - t0)


class OwnerBrands:
    """What an owner does to their brands, whichever door they come through (the JSON API, the
    portal): the same authorisation, contract checks, image checks and budget."""

    def __init__(self, registry: BrandRegistry, image_store: ImageStore, limits: ApiLimits = ApiLimits()) -> None:
        self.registry, self.image_store, self.limits = registry, image_store, limits

    def owned(self, brand_id: str, who: Account) -> BrandEntry:
        e = self.registry.get(brand_id)
        if e is None:
            raise HTTPException(404, f"brand {brand_id}: not registered")
        if e.owner != who.name:
            raise HTTPException(403, f"brand {brand_id}: owned by another account")
        return e

    def put(self, brand_id: str, raw: bytes, uploads: dict[str, bytes], who: Account):
        """A brand change from its contract JSON and the uploaded files it names."""
        registry, limits = self.registry, self.limits
        brand = brand_from_obj(loads(raw, limits.max_brand_json_bytes))
        if brand.brand_id != brand_id:
            raise ContractError(f"brand_id: {brand.brand_id!r} in the body, {brand_id!r} in the path")
        actor = Actor.account(who.name)
        pixels = self._pixels(brand.logos + brand.product_images, uploads)
        registry.check_put(brand, actor, image_pixels=pixels)     # the image budget, before storing
        used: set[str] = set()
        mine = registry.images_of(who.name)
        brand = dataclasses.replace(
            brand, logos=self._store_refs(brand.logos, "logos", uploads, used, mine),
            product_images=self._store_refs(brand.product_images, "product_images", uploads, used, mine))
        unused = sorted(set(uploads) - used)
        if unused:
            raise ContractError(f"uploaded file(s) {', '.join(map(repr, unused))} not referenced by "
                                f"logos or product_images")
        return registry.put(brand, actor, image_pixels=pixels)

    def _pixels(self, refs: tuple[ImageRef, ...], uploads: dict[str, bytes]) -> int:
        """Header pixels of the images a brand names (what `_store_refs` refuses counts 0)."""
        image_store = self.image_store
        n = 0
        for ref in refs:
            try:
                if ref.uri in uploads:
                    n += probe(uploads[ref.uri]).pixels
                elif ref.sha256 is not None and image_store.has(ref.sha256):
                    n += image_store.get(ref.sha256).info.pixels
            except ImageRejected:
                continue
        return n

    def _store_refs(self, refs: tuple[ImageRef, ...], name: str, uploads: dict[str, bytes], used: set[str],
                    mine: set[str]):
        """Uploaded files are checked and stored; a reference by sha256 alone must name an image
        of one of the account's own brands (the store is shared: another brand's logo is not
        the account's to reuse by its digest)."""
        image_store = self.image_store
        out = []
        for i, ref in enumerate(refs):
            try:
                if ref.uri in uploads:
                    used.add(ref.uri)
                    out.append(image_store.put(uploads[ref.uri], ref.sha256).ref())
                elif ref.sha256 is not None and ref.sha256 in mine and image_store.has(ref.sha256):
                    out.append(image_store.get(ref.sha256).ref())
                elif ref.sha256 is not None and image_store.has(ref.sha256):
                    raise ImageRejected(f"sha256 {ref.sha256[:12]}… is not an image of your brands; upload the file")
                else:
                    raise ImageRejected(f"uri {ref.uri[:200]!r} is neither an uploaded file nor a stored image "
                                        f"(sha256); the API does not fetch urls or paths")
            except ImageRejected as e:
                raise ImageRejected(f"{name}[{i}]: {e}") from None
        return tuple(out)

    def remove(self, feedback: Any, brand_id: str, listing_id: str, reason: str, who: Account) -> dict[str, Any]:
        """Submit a self-service removal (the brand approved and the privilege granted)."""
        e = self.owned(brand_id, who)
        if e.live is None or e.live.deleted:
            raise HTTPException(403, f"brand {brand_id}: not approved yet, nothing to remove listings for")
        if Privilege.SELF_SERVICE_REMOVAL not in e.grants:
            raise HTTPException(403, f"brand {brand_id}: self-service removal is not granted; request it "
                                     f"(POST /v1/brands/{brand_id}/requests)")
        ev = FeedbackEvent(FeedbackKind.BRAND_REMOVAL, listing_id, brand_id, int(time.time() * 1000),
                           who.name, reason)
        return feedback.submit(ev)


def _entry_json(e: BrandEntry) -> dict[str, Any]:
    return {"brand": brand_to_obj(e.brand), "owner": e.owner, "updated_at_ms": e.updated_at_ms,
            "status": e.status.value, "published": brand_to_obj(e.live) if e.live is not None else None,
            "concerns": list(e.concerns), "grants": sorted(p.value for p in e.grants),
            "requests": sorted(p.value for p in e.requests), "note": e.note}


_MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["brand"],
                "properties": {
                    "brand": {"type": "string", "description":
                              "The brand reference as contract JSON (brand.schema.json). Each logos/product_images "
                              "uri names an uploaded file part (its filename), or the entry carries the sha256 of "
                              "an image already stored. The API never fetches urls or paths."},
                    "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": "PNG, JPEG or WebP files referenced by the brand JSON"},
                },
            },
        },
        "application/json": {"schema": {"type": "object", "description": "brand JSON without new images"}},
    },
}


@dataclass(frozen=True)
class _Roles:
    """The route dependencies: the token's account, checked for a role (FastAPI reads these
    annotations from the route signatures)."""

    Owner: Any
    Operator: Any
    Reviewer: Any


def _auth(accounts: AccountStore, bucket: TokenBucket, metrics: ApiMetrics) -> _Roles:
    bearer = HTTPBearer(auto_error=False, description="API token from `zeroscan accounts create`")

    def account(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Account:
        found = accounts.authenticate(creds.credentials) if creds is not None else None
        if found is None:
            metrics.auth_failures.inc()
            raise HTTPException(401, "missing or invalid API token" if creds is None else "invalid API token",
                                headers={"WWW-Authenticate": "Bearer"})
        wait = bucket.take(hash_token(creds.credentials))
        if wait > 0:
            metrics.rate_limited.inc()
            raise HTTPException(429, "rate limit exceeded for this token",
                                headers={"Retry-After": str(math.ceil(wait))})
        return found

    def role(needed: Role):
        def check(who: Annotated[Account, Depends(account)]) -> Account:
            if who.role is not needed:
                raise HTTPException(403, f"this needs the {needed.value} role; "
                                         f"{who.name} has the {who.role.value} role")
            return who
        return check

    return _Roles(Annotated[Account, Depends(role(Role.OWNER))], Annotated[Account, Depends(role(Role.OPERATOR))],
                  Annotated[Account, Depends(role(Role.REVIEWER))])


def ops_router(collector) -> APIRouter:
    r = APIRouter(tags=["ops"])

    @r.get("/healthz", response_model=HealthOut)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(collector), media_type=CONTENT_TYPE_LATEST)

    return r


def brands_router(roles: _Roles, brands: OwnerBrands, limits: ApiLimits) -> APIRouter:
    """An owner's brands: list, read, register or update (with images), withdraw, ask for privileges."""
    registry, image_store, owned = brands.registry, brands.image_store, brands.owned
    r = APIRouter(tags=["brands"], responses=errors(*AUTH, 403))

    @r.get("/v1/brands", response_model=BrandsOut)
    def list_brands(who: roles.Owner, include_withdrawn: bool = False) -> dict[str, list]:
        return {"brands": [_entry_json(e) for e in registry.entries(owner=who.name,
                                                                      include_withdrawn=include_withdrawn)]}

    @r.get("/v1/brands/{brand_id}", response_model=EntryOut, responses=errors(404))
    def get_brand(brand_id: str, who: roles.Owner) -> dict[str, Any]:
        return _entry_json(owned(brand_id, who))

    @r.put("/v1/brands/{brand_id}", status_code=200, response_model=EntryOut,
           openapi_extra={"requestBody": _MULTIPART_BODY},
           responses={201: {"model": EntryOut, "description": "registered"},
                      200: {"model": EntryOut, "description": "updated"},
                      202: {"model": EntryOut, "description": "submitted, waiting for an operator's approval"},
                      **errors(400, 404, 409, 413, 415, 422, 503)})
    async def put_brand(brand_id: str, request: Request, who: roles.Owner) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        uploads: dict[str, bytes] = {}
        if ctype == "multipart/form-data":
            async with request.form(max_files=limits.max_files, max_fields=limits.max_files + 1,
                                    max_part_size=limits.max_brand_json_bytes) as form:
                raw = form.get("brand")
                if raw is None:
                    raise HTTPException(422, "multipart body needs a 'brand' part with the brand JSON")
                if isinstance(raw, UploadFile):
                    raw = await raw.read(limits.max_brand_json_bytes + 1)
                for _field, part in form.multi_items():
                    if isinstance(part, UploadFile) and _field != "brand":
                        if not part.filename:
                            raise HTTPException(422, "every uploaded image needs a filename")
                        if part.filename in uploads:
                            raise HTTPException(422, f"file {part.filename!r} uploaded twice")
                        uploads[part.filename] = await part.read(image_store.limits.max_bytes + 1)
        elif ctype == "application/json":
            raw = await request.body()
        else:
            raise HTTPException(415, "send multipart/form-data (brand JSON + images) or application/json")
        if isinstance(raw, str):
            raw = raw.encode()
        change = await run_in_threadpool(brands.put, brand_id, raw, uploads, who)
        status = {ChangeKind.REGISTERED: 201, ChangeKind.SUBMITTED: 202}.get(change.kind, 200)
        return JSONResponse(_entry_json(change.entry), status_code=status)

    @r.delete("/v1/brands/{brand_id}", response_model=EntryOut, responses=errors(404, 409, 503))
    def withdraw_brand(brand_id: str, who: roles.Owner,
                       version: Annotated[int | None, Query(ge=1, description="default: the next version")] = None
                       ) -> dict[str, Any]:
        owned(brand_id, who)
        return _entry_json(registry.withdraw(brand_id, Actor.account(who.name), version).entry)

    @r.post("/v1/brands/{brand_id}/requests", response_model=EntryOut, responses=errors(404, 422))
    def request_privilege(brand_id: str, body: PrivilegeRequest, who: roles.Owner) -> dict[str, Any]:
        """Ask the operator for `takedown` enforcement or self-service removal."""
        owned(brand_id, who)
        return _entry_json(registry.request(brand_id, body.privilege, Actor.account(who.name)).entry)

    return r


def review_router(roles: _Roles, registry: BrandRegistry) -> APIRouter:
    """Operators: pending submissions, approval (with privileges), rejection, privileges, audit."""
    r = APIRouter(tags=["operators"], responses=errors(*AUTH, 403))

    def operator_actor(who: Account) -> Actor:
        return Actor(who.name, is_admin=True)

    @r.get("/v1/review/pending", response_model=PendingOut)
    def list_pending(who: roles.Operator) -> dict[str, list]:
        """Owners' submissions waiting for approval, with the reasons to look at (concerns)."""
        return {"pending": [_entry_json(e) for e in registry.pending()]}

    @r.post("/v1/review/brands/{brand_id}/approve", response_model=EntryOut, responses=errors(404, 409, 422, 503))
    def approve(brand_id: str, body: ApprovalRequest, who: roles.Operator) -> dict[str, Any]:
        return _entry_json(registry.approve(brand_id, operator_actor(who), body.grant).entry)

    @r.post("/v1/review/brands/{brand_id}/reject", response_model=EntryOut, responses=errors(404, 409, 422))
    def reject(brand_id: str, body: RejectionRequest, who: roles.Operator) -> dict[str, Any]:
        return _entry_json(registry.reject(brand_id, operator_actor(who), body.reason).entry)

    @r.post("/v1/review/brands/{brand_id}/privileges", response_model=EntryOut, responses=errors(404, 422, 503))
    def set_privilege(brand_id: str, body: PrivilegeChange, who: roles.Operator) -> dict[str, Any]:
        return _entry_json(registry.set_privilege(brand_id, body.privilege, operator_actor(who), body.granted).entry)

    @r.get("/v1/review/brands/{brand_id}/audit", response_model=AuditOut)
    def audit(brand_id: str, who: roles.Operator) -> dict[str, list]:
        """Who did what to the brand, and when."""
        return {"audit": [dataclasses.asdict(a) for a in registry.audit(brand_id)]}

    return r


def feedback_router(roles: _Roles, brands: OwnerBrands, feedback: Any, signals: Any, standing: Any) -> APIRouter:
    """Removals and appeals (with `feedback`), a brand's open signals (`signals`) and standing
    (`standing`): each route only when its part is given."""
    owned = brands.owned
    r = APIRouter(responses=errors(*AUTH, 403))
    if feedback is not None:
        @r.post("/v1/brands/{brand_id}/removals", tags=["feedback"], status_code=202, response_model=SubmittedOut,
                response_model_exclude_none=True,
                responses={202: {"description": "removal submitted; the scanner decides within seconds"},
                           **errors(404, 422)})
        def remove_listing(brand_id: str, body: RemovalRequest, who: roles.Owner) -> dict[str, Any]:
            """Self-service removal of a listing that presents your brand. The scanner takes it
            down if it has seen the listing present the brand; a removal of a listing it never
            saw is held for review; one of a listing that presents other brands only is refused."""
            return {"submitted": brands.remove(feedback, brand_id, body.listing_id, body.reason, who)}

        @r.post("/v1/appeals", tags=["reviewers"], status_code=202, response_model=SubmittedOut,
                response_model_exclude_none=True, responses=errors(422))
        def decide_appeal(body: AppealDecision, who: roles.Reviewer) -> dict[str, Any]:
            """A reviewer's answer to an appeal against a removal: upheld reinstates the listing."""
            kind = FeedbackKind.APPEAL_UPHELD if body.upheld else FeedbackKind.APPEAL_REJECTED
            ev = FeedbackEvent(kind, body.listing_id, body.brand_id, int(time.time() * 1000), who.name, body.reason)
            return {"submitted": feedback.submit(ev)}

    if signals is not None:
        @r.get("/v1/brands/{brand_id}/signals", tags=["feedback"], response_model=SignalsOut, responses=errors(404))
        def brand_signals(brand_id: str, who: roles.Owner) -> dict[str, Any]:
            """Your brand's open signals: listings whose latest decision flags them for it, with the
            evidence (what matched, where) to act on each in one step."""
            owned(brand_id, who)
            return {"brand_id": brand_id, "signals": signals.signals(brand_id)}

    if standing is not None:
        @r.get("/v1/brands/{brand_id}/standing", tags=["feedback"], response_model=StandingOut,
               responses=errors(404))
        def brand_standing(brand_id: str, who: roles.Owner) -> dict[str, Any]:
            """Removal accuracy over the window, whether self-service removal is suspended, counts
            by outcome, and the notifications of every change of standing."""
            owned(brand_id, who)
            return standing.standing(brand_id)

    return r


def create_app(registry: BrandRegistry, image_store: ImageStore, accounts: AccountStore, *,
               limits: ApiLimits = ApiLimits(), clock: Callable[[], float] = time.monotonic,
               feedback: Any = None, signals: Any = None, standing: Any = None, check: Any = None) -> FastAPI:
    """The API over a registry (which holds the publisher), an image store and the account store.
    With `feedback` (a FeedbackPublisher) owners can remove listings; with `signals` (a
    SignalIndex) they can list their brand's open signals; with `standing` (a StandingIndex)
    read their removal accuracy and whether self-service is suspended. The portal for owners is
    at /ui/ (`zeroscan.portal`; `check`: its ListingCheck, text only when None). API metrics go
    into `registry.collector`, next to the registry's own."""
    collector = registry.collector
    metrics = ApiMetrics(
        requests=Counter("zeroscan_api_requests", "API requests", ["route", "method", "status"], registry=collector),
        latency=Histogram("zeroscan_api_request_seconds", "API request latency", ["route", "method"],
                          buckets=_LATENCY_BUCKETS, registry=collector),
        auth_failures=Counter("zeroscan_api_auth_failures", "Requests refused for a missing or bad token",
                              registry=collector),
        rate_limited=Counter("zeroscan_api_rate_limited", "Requests refused by the rate limit", registry=collector),
    )
    bucket = TokenBucket(limits.rate_burst, limits.rate_per_s, clock)
    roles = _auth(accounts, bucket, metrics)
    brands = OwnerBrands(registry, image_store, limits)
    app = FastAPI(title="zeroscan brand owners' API", version="1",
                  description="Brand owners register, update and withdraw their brand references. "
                              "Each accepted change reaches the running scanners within seconds.")
    app.include_router(ops_router(collector))
    app.include_router(brands_router(roles, brands, limits))
    app.include_router(feedback_router(roles, brands, feedback, signals, standing))
    app.include_router(review_router(roles, registry))

    def _error(status: int):
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handler

    for exc, status in ((ContractError, 422), (ImageRejected, 422), (ImageBudgetError, 422), (NotOwnerError, 403),
                        (BrandNotFoundError, 404), (StaleVersionError, 409), (AlreadyWithdrawnError, 409),
                        (NotPendingError, 409), (PublishFailedError, 503), (RegistryLockedError, 503)):
        app.add_exception_handler(exc, _error(status))

    app.include_router(portal_router(PortalParts(brands, accounts, bucket, feedback, signals, standing,
                                                 check or ListingCheck(), clock)))
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.routes)
    return app


# How long a stopping API (SIGTERM, Ctrl-C) waits for open connections to finish: any client
# can hold one open (a TLS handshake never begun, an idle keep-alive), which uvicorn would
# otherwise wait for (measured: 30 s for a connection that never began its TLS handshake).
SHUTDOWN_GRACE_S = 5


def serve(app: FastAPI, host: str, port: int, tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """Serve over HTTPS when given a PEM certificate (chain) and its private key."""
    import uvicorn

    if (tls_cert is None) != (tls_key is None):
        raise ValueError("HTTPS needs both a certificate (--tls-cert) and its private key (--tls-key)")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, proxy_headers=False,
                ws="none", lifespan="off", ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)

