"""The brand owners' portal at /ui/: server-rendered pages over the same parts and the same rules
as the JSON API (`OwnerBrands`: an owner sees and changes only their own brands, submissions wait
for an operator; the API's per-token rate limit). Signed in with the account's API token into a
server-side session (`sessions`); every form POST carries the session's CSRF token and a POST
from another origin is refused. Pages: my brands (register and edit, with image previews),
open signals (evidence in words, one-click and CSV bulk removal), removal history, standing
(accuracy trend as an inline SVG chart), and "check a listing" (`check.ListingCheck`, the job's
scanner in process). All assets are served from the package (`static/`), no CDN."""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile

from brand_signals.catalog import StaleVersionError
from brand_signals.contract import ContractError
from brand_signals.registry import (
    Actor,
    AlreadyWithdrawnError,
    BrandEntry,
    BrandNotFoundError,
    ImageBudgetError,
    NotOwnerError,
    Privilege,
    PublishFailedError,
    RegistryLockedError,
    Status,
    published_form,
)
from connectors.image_store import SHA256_RE, ImageRejected
from zeroscan.accounts import Account, AccountStore, Role, hash_token
from zeroscan.portal import words
from zeroscan.portal.check import ListingCheck
from zeroscan.portal.sessions import COOKIE, Session, SessionStore, csrf_ok
from zeroscan.rate_limit import TokenBucket

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PREFIX = "/ui"
# Sign-in attempts per client address: 10 in a burst, then one every 5 s.
SIGNIN_BURST, SIGNIN_PER_S = 10, 0.2
MAX_BULK_ROWS = 500
MAX_CSV_BYTES = 256 << 10
MAX_FORM_FILES = 100
# What a failed change says to the owner (the JSON API maps the same errors to statuses).
_OWNER_ERRORS = (ContractError, ImageRejected, ImageBudgetError, NotOwnerError, BrandNotFoundError, StaleVersionError,
                 AlreadyWithdrawnError, PublishFailedError, RegistryLockedError, ValueError)
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@dataclass
class PortalParts:
    """What the portal works with: the API's own parts."""

    brands: Any                 # zeroscan.api.OwnerBrands
    accounts: AccountStore
    bucket: Any                 # zeroscan.rate_limit.TokenBucket, shared with the JSON API
    feedback: Any = None
    signals: Any = None
    standing: Any = None
    check: ListingCheck | None = None
    clock: Any = time.monotonic


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = words.when
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f} %"
    env.globals.update(signal_words=words.signal_words, mark_text=words.mark_text, prefix=PREFIX)
    return env


def portal_router(parts: PortalParts) -> APIRouter:
    env = _env()
    sessions = SessionStore(parts.clock)
    signin_bucket = TokenBucket(SIGNIN_BURST, SIGNIN_PER_S, parts.clock)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    statics = {p.name: p for p in STATIC.iterdir() if p.is_file()}

    # --- sessions ----------------------------------------------------------------------------
    def _cookie(resp: Response, request: Request, sid: str) -> None:
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path=PREFIX,
                        secure=request.url.scheme == "https")

    def _anonymous(request: Request) -> tuple[str | None, Session]:
        sid = request.cookies.get(COOKIE)
        s = sessions.get(sid)
        if s is None:
            sid, s = sessions.new()
            return sid, s
        return None, s

    def _signed_in(request: Request) -> tuple[Session, Account]:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None or not s.account:
            raise _Redirect(f"{PREFIX}/login")
        a = parts.accounts.get(s.account)
        if a is None or a.revoked or not a.token_sha256 or a.token_sha256 != s.token_sha256:
            sessions.drop(request.cookies.get(COOKIE))
            raise _Redirect(f"{PREFIX}/login?ended=1")
        return s, a

    def _rate(s: Session) -> None:
        wait = parts.bucket.take(s.token_sha256)
        if wait > 0:
            raise HTTPException(429, f"rate limit exceeded for this account; try again in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})

    def _same_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            o = urlsplit(origin)
            if o.netloc != request.headers.get("host", "") or o.scheme != request.url.scheme:
                raise HTTPException(403, "refused: a form of another site")
        elif origin == "null":
            raise HTTPException(403, "refused: a form of an opaque origin")

    async def _form(request: Request, s: Session, *, files: bool = False) -> FormData:
        """The posted form, once its origin and CSRF token are checked."""
        _same_origin(request)
        form = await request.form(max_files=MAX_FORM_FILES if files else 0, max_fields=1000)
        if not csrf_ok(s, form.get("csrf") if isinstance(form.get("csrf"), str) else None):
            await form.close()
            raise HTTPException(403, "refused: the form's CSRF token is missing or wrong (reload the page)")
        return form

    def page(request: Request, name: str, s: Session | None, who: Account | None, status: int = 200,
             **ctx) -> HTMLResponse:
        flash = list(s.flash) if s is not None else []
        if s is not None:
            s.flash.clear()
        html = env.get_template(name).render(request=request, who=who, csrf=s.csrf if s else "", flash=flash,
                                             nav=name.split(".")[0], **ctx)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def redirect(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303, headers={"Cache-Control": "no-store"})

    def guarded(handler):
        """Sign-in redirects and refusals as pages, not JSON."""
        import functools

        @functools.wraps(handler)
        async def run(request: Request, *a, **kw):
            try:
                return await handler(request, *a, **kw)
            except _Redirect as r:
                return redirect(r.to)
            except HTTPException as e:
                s = sessions.get(request.cookies.get(COOKIE))
                resp = page(request, "error.html", s, None, status=e.status_code, message=e.detail)
                if e.headers and "Retry-After" in e.headers:
                    resp.headers["Retry-After"] = e.headers["Retry-After"]
                return resp
        return run

    def _mine(who: Account) -> list[BrandEntry]:
        return list(parts.brands.registry.entries(owner=who.name))

    # --- sign in and out ---------------------------------------------------------------------
    @router.get("/")
    @guarded
    async def home(request: Request):
        _signed_in(request)
        return redirect(f"{PREFIX}/brands")

    @router.get("/login")
    async def login_form(request: Request):
        sid, s = _anonymous(request)
        ended = request.query_params.get("ended") == "1"
        resp = page(request, "login.html", s, None, error="your session ended: sign in again" if ended else "")
        if sid is not None:
            _cookie(resp, request, sid)
        return resp

    @router.post("/login")
    @guarded
    async def login(request: Request):
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise _Redirect(f"{PREFIX}/login")
        form = await _form(request, s)
        client = request.client.host if request.client else "?"
        wait = signin_bucket.take(client)
        if wait > 0:
            raise HTTPException(429, f"too many sign-in attempts; try again in {math.ceil(wait)} s")
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        found = parts.accounts.authenticate(token) if token else None
        if found is None or found.role is not Role.OWNER:
            error = ("the portal is for brand owners; operators and reviewers use the command line or the API"
                     if found is not None else "that token is not valid")
            return page(request, "login.html", s, None, status=401, error=error)
        # a new session id at sign-in: a session id planted before it opens nothing
        sessions.drop(request.cookies.get(COOKIE))
        sid, _new = sessions.new(found.name, hash_token(token))
        resp = redirect(f"{PREFIX}/brands")
        _cookie(resp, request, sid)
        return resp

    @router.post("/logout")
    @guarded
    async def logout(request: Request):
        s, _who = _signed_in(request)
        await _form(request, s)
        sessions.drop(request.cookies.get(COOKIE))
        resp = redirect(f"{PREFIX}/login")
        resp.delete_cookie(COOKIE, path=PREFIX)
        return resp

    @router.get("/static/{name}")
    async def static(name: str):
        p = statics.get(name)
        if p is None:
            raise HTTPException(404, "no such file")
        return FileResponse(p, headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    # --- brands ------------------------------------------------------------------------------
    @router.get("/brands")
    @guarded
    async def brands_page(request: Request):
        s, who = _signed_in(request)
        _rate(s)
        return page(request, "brands.html", s, who, entries=_mine(who))

    @router.get("/brands/new")
    @guarded
    async def new_brand(request: Request):
        s, who = _signed_in(request)
        return page(request, "brand_edit.html", s, who, entry=None, values={})

    @router.get("/brands/{brand_id}")
    @guarded
    async def edit_brand(request: Request, brand_id: str):
        s, who = _signed_in(request)
        _rate(s)
        e = parts.brands.owned(brand_id, who)
        return page(request, "brand_edit.html", s, who, entry=e, values=_values(e))

    @router.post("/brands")
    @guarded
    async def save_brand(request: Request):
        s, who = _signed_in(request)
        form = await _form(request, s, files=True)
        try:
            _rate(s)
            brand_id = str(form.get("brand_id") or "").strip()
            e = parts.brands.registry.get(brand_id) if brand_id else None
            if e is not None:
                e = parts.brands.owned(brand_id, who)
            values = {k: form.get(k) for k in ("brand_id", "name", "trademarks", "authorized_sellers", "enforcement",
                                               "min_price_amount", "min_price_currency")}
            try:
                obj, uploads = await _brand_from_form(form, e, parts.brands.image_store.limits.max_bytes)
                change = await run_in_threadpool(parts.brands.put, brand_id, orjson.dumps(obj), uploads, who)
            except (HTTPException, *_OWNER_ERRORS) as err:
                msg = err.detail if isinstance(err, HTTPException) else str(err)
                return page(request, "brand_edit.html", s, who, status=422, entry=e, values=values, error=msg)
        finally:
            await form.close()
        status = change.entry.status
        s.flash.append(("ok", f"{brand_id} v{change.entry.brand.version} "
                              + ("submitted: it waits for an operator's approval" if status is Status.PENDING
                                 else "saved")))
        return redirect(f"{PREFIX}/brands")

    @router.post("/brands/{brand_id}/withdraw")
    @guarded
    async def withdraw(request: Request, brand_id: str):
        s, who = _signed_in(request)
        await _form(request, s)
        _rate(s)
        parts.brands.owned(brand_id, who)
        try:
            await run_in_threadpool(parts.brands.registry.withdraw, brand_id, Actor.account(who.name), None)
            s.flash.append(("ok", f"{brand_id} withdrawn"))
        except _OWNER_ERRORS as err:
            s.flash.append(("bad", str(err)))
        return redirect(f"{PREFIX}/brands")

    @router.post("/brands/{brand_id}/request")
    @guarded
    async def request_privilege(request: Request, brand_id: str):
        s, who = _signed_in(request)
        form = await _form(request, s)
        _rate(s)
        parts.brands.owned(brand_id, who)
        try:
            priv = Privilege(str(form.get("privilege")))
            await run_in_threadpool(parts.brands.registry.request, brand_id, priv, Actor.account(who.name))
            s.flash.append(("ok", f"{priv.value.replace('_', ' ')} requested for {brand_id}: an operator decides"))
        except _OWNER_ERRORS as err:
            s.flash.append(("bad", str(err)))
        return redirect(f"{PREFIX}/brands")

    @router.get("/images/{sha256}")
    @guarded
    async def image(request: Request, sha256: str):
        _s, who = _signed_in(request)
        if not SHA256_RE.fullmatch(sha256) or sha256 not in parts.brands.registry.images_of(who.name):
            raise HTTPException(404, "no such image among your brands")
        stored = parts.brands.image_store.get(sha256)
        return FileResponse(stored.path, media_type=stored.info.format.content_type,
                            headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    # --- signals, removals, history, standing --------------------------------------------------
    def _approved(e: BrandEntry) -> bool:
        return e.live is not None and not e.live.deleted

    @router.get("/signals")
    @guarded
    async def signals_page(request: Request):
        s, who = _signed_in(request)
        _rate(s)
        rows = []
        for e in _mine(who):
            if parts.signals is None or not _approved(e):
                continue
            can_remove = parts.feedback is not None and Privilege.SELF_SERVICE_REMOVAL in e.grants
            for d in sorted(parts.signals.signals(e.brand.brand_id), key=lambda d: -d.get("decided_at", 0)):
                listing = parts.signals.listing_of(d) if hasattr(parts.signals, "listing_of") else None
                rows.append({"brand": e.brand, "d": d, "listing": listing, "can_remove": can_remove,
                             "matched": words.matched_texts(d.get("signals", ())),
                             "images": [im.get("uri") for im in (listing or {}).get("images", ())
                                        if str(im.get("uri", "")).startswith("https://")][:6]})
        return page(request, "signals.html", s, who, rows=rows, entries=[e for e in _mine(who) if _approved(e)],
                    enabled=parts.signals is not None)

    def _remove(s: Session, who: Account, brand_id: str, listing_id: str, reason: str) -> dict:
        if parts.feedback is None:
            raise HTTPException(503, "removals are off on this server (it does not publish)")
        _rate(s)
        return parts.brands.remove(parts.feedback, brand_id, listing_id, reason, who)

    @router.post("/signals/remove")
    @guarded
    async def remove(request: Request):
        s, who = _signed_in(request)
        form = await _form(request, s)
        brand_id, listing_id = str(form.get("brand_id") or ""), str(form.get("listing_id") or "").strip()
        reason = str(form.get("reason") or "")[:2000]
        if not listing_id or len(listing_id) > 128:
            raise HTTPException(422, "a listing id of 1 to 128 characters")
        await run_in_threadpool(_remove, s, who, brand_id, listing_id, reason)
        s.flash.append(("ok", f"removal of {listing_id} submitted: the scanner decides within seconds "
                              f"(see the removal history)"))
        return redirect(f"{PREFIX}/signals")

    @router.post("/signals/bulk")
    @guarded
    async def bulk(request: Request):
        s, who = _signed_in(request)
        form = await _form(request, s, files=True)
        try:
            brand_id = str(form.get("brand_id") or "")
            parts.brands.owned(brand_id, who)
            up = form.get("csv")
            raw = await up.read(MAX_CSV_BYTES + 1) if isinstance(up, UploadFile) else b""
        finally:
            await form.close()
        if len(raw) > MAX_CSV_BYTES:
            raise HTTPException(413, f"the CSV is above {MAX_CSV_BYTES >> 10} KiB")
        rows = _csv_rows(raw)
        done = 0
        failed: list[str] = []
        for listing_id, reason in rows:
            try:
                await run_in_threadpool(_remove, s, who, brand_id, listing_id, reason)
                done += 1
            except HTTPException as err:
                failed.append(f"{listing_id}: {err.detail}")
                if err.status_code in (403, 429, 503):
                    failed.append(f"stopped; {len(rows) - done - len(failed) + 1} row(s) not sent")
                    break
        s.flash.append(("ok" if not failed else "bad",
                        f"{done} removal(s) of {brand_id} submitted" + ("; " + "; ".join(failed[:5]) if failed else "")))
        return redirect(f"{PREFIX}/signals")

    @router.get("/history")
    @guarded
    async def history_page(request: Request):
        s, who = _signed_in(request)
        _rate(s)
        rows = []
        if parts.standing is not None:
            for e in _mine(who):
                for ev in parts.standing.history(e.brand.brand_id):
                    words_, tone = words.OUTCOMES.get(ev["kind"], (ev["kind"], ""))
                    rows.append({**ev, "outcome": words_, "tone": tone})
        rows.sort(key=lambda r: -(r.get("judged_at") or r["event_time"]))
        return page(request, "history.html", s, who, rows=rows, enabled=parts.standing is not None)

    @router.get("/standing")
    @guarded
    async def standing_page(request: Request):
        s, who = _signed_in(request)
        _rate(s)
        cards = []
        if parts.standing is not None:
            for e in _mine(who):
                st = parts.standing.standing(e.brand.brand_id)
                cards.append({"entry": e, "st": st, "chart": words.trend_svg(st.get("trend", []), st["accuracy_bar"])})
        return page(request, "standing.html", s, who, cards=cards, enabled=parts.standing is not None)

    # --- check a listing ----------------------------------------------------------------------
    @router.get("/check")
    @guarded
    async def check_form(request: Request):
        s, who = _signed_in(request)
        return page(request, "check.html", s, who, values={}, results=None,
                    images=parts.check is not None and parts.check.images_enabled)

    @router.post("/check")
    @guarded
    async def check(request: Request):
        s, who = _signed_in(request)
        form = await _form(request, s, files=True)
        try:
            _rate(s)
            values = {k: str(form.get(k) or "")[:20000] for k in ("title", "brand", "description")}
            up = form.get("image")
            data = None
            if isinstance(up, UploadFile) and up.filename:
                data = await up.read(parts.brands.image_store.limits.max_bytes + 1)
                data = data or None
        finally:
            await form.close()
        images = parts.check is not None and parts.check.images_enabled
        mine = [published_form(e.brand, e.grants) for e in _mine(who)]   # takedown only once granted
        error = ""
        results: list = []
        if not any(values.values()) and data is None:
            error = "paste a title (or a brand field or description) or choose a photo"
        elif parts.check is None:
            error = "listing checks are off on this server"
        else:
            try:
                results = await run_in_threadpool(lambda: parts.check.check(who.name, mine, image=data, **values))
            except (ImageRejected, ValueError) as err:
                error = str(err)
        statuses = {e.brand.brand_id: e.status.value for e in _mine(who)}
        return page(request, "check.html", s, who, values=values, results=results, error=error, images=images,
                    statuses=statuses, matched=[m for r in results for m in words.matched_texts(r["signals"])],
                    had_image=data is not None, no_brands=not mine)

    return router


def _lines(v: Any) -> list[str]:
    return [x.strip() for x in str(v or "").splitlines() if x.strip()]


def _values(e: BrandEntry) -> dict[str, Any]:
    b = e.brand
    return {"brand_id": b.brand_id, "name": b.name, "trademarks": "\n".join(b.trademarks),
            "authorized_sellers": "\n".join(sorted(b.authorized_sellers)), "enforcement": b.enforcement.value,
            "min_price_amount": "" if b.min_price is None else f"{b.min_price.amount:g}",
            "min_price_currency": "" if b.min_price is None else b.min_price.currency}


async def _brand_from_form(form: FormData, e: BrandEntry | None, max_bytes: int) -> tuple[dict, dict[str, bytes]]:
    """The brand's contract JSON and its uploads from the edit form: the next version, the kept
    images by their sha256, the new files under names of their own (never the browser's)."""
    brand_id = str(form.get("brand_id") or "").strip()
    obj: dict[str, Any] = {"brand_id": brand_id, "version": (e.brand.version + 1) if e is not None else 1,
                           "name": str(form.get("name") or "").strip(), "trademarks": _lines(form.get("trademarks")),
                           "enforcement": str(form.get("enforcement") or "notify")}
    if e is not None and e.brand.categories:
        obj["categories"] = list(e.brand.categories)
    sellers = _lines(form.get("authorized_sellers"))
    if sellers:
        obj["authorized_sellers"] = sellers
    amount = str(form.get("min_price_amount") or "").strip()
    if amount:
        try:
            value = float(amount)
        except ValueError:
            raise ContractError(f"price floor: {amount[:40]!r} is not a number") from None
        obj["min_price"] = {"amount": value, "currency": str(form.get("min_price_currency") or "").strip().upper()}
    uploads: dict[str, bytes] = {}
    for field, key in (("logos", "logo"), ("product_images", "photo")):
        kept = {str(v) for v in form.getlist(f"keep_{key}")}
        old = getattr(e.brand, field) if e is not None else ()
        refs = [{"uri": f"stored-{r.sha256[:12]}", "sha256": r.sha256} for r in old if r.sha256 in kept]
        for i, part in enumerate(form.getlist(key)):
            if isinstance(part, UploadFile) and part.filename:
                data = await part.read(max_bytes + 1)
                if data:
                    name = f"{key}-{i}"
                    uploads[name] = data
                    refs.append({"uri": name})
        if refs:
            obj[field] = refs
    return obj, uploads


def _csv_rows(raw: bytes) -> list[tuple[str, str]]:
    """listing_id[,reason] per row; a header row naming listing_id is skipped."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, "the CSV is not UTF-8 text") from None
    rows = []
    for i, rec in enumerate(csv.reader(io.StringIO(text))):
        if not rec or not rec[0].strip():
            continue
        if i == 0 and rec[0].strip().lower() == "listing_id":
            continue
        lid = rec[0].strip()
        if len(lid) > 128:
            raise HTTPException(422, f"row {i + 1}: a listing id is 128 characters at most")
        rows.append((lid, (rec[1].strip() if len(rec) > 1 else "")[:2000]))
        if len(rows) > MAX_BULK_ROWS:
            raise HTTPException(422, f"at most {MAX_BULK_ROWS} rows per file")
    if not rows:
        raise HTTPException(422, "the CSV names no listing (one listing_id per row, optionally a reason)")
    return rows
