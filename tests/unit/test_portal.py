"""The portal over HTTP (a live uvicorn server on a loopback port, a real registry and account
store in a temp folder, no broker): sign-in and sessions, CSRF and cross-origin refusals tried as
an attacker would, one owner's brands and images out of another's reach, a rotated token ending
the session, a brand registered with a logo waiting for the operator, the in-process listing
check (text and photo); and the pieces: evidence in words, marked titles (escaped), the trend
chart, the accuracy trend."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
import requests
from PIL import Image

from brand_signals.feedback.ledger import LedgerEvent, LedgerKind
from brand_signals.feedback.state import FeedbackPolicy, FeedbackState
from brand_signals.records import Action, BrandReference
from brand_signals.registry import Actor, BrandRegistry, Privilege
from connectors.image_store import ImageStore, sha256_hex
from tests.portal_support import png, serve, session_csrf
from zeroscan.accounts import AccountStore, Role
from zeroscan.api import create_app
from zeroscan.portal import _csv_rows, words
from pipelines.scan_config import ImageScan
from zeroscan.portal.check import ListingCheck
from zeroscan.portal.sessions import SessionStore, csrf_ok

pytestmark = pytest.mark.unit


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def flashes(html: str) -> list[str]:
    return re.findall(r'class="flash[^"]*"(?: id="error")?>([^<]*)<', html)


@pytest.fixture
def portal(tmp_path):
    registry = BrandRegistry.at_state_dir(tmp_path, None)
    accounts = AccountStore.at_state_dir(tmp_path)
    tokens = {n: accounts.create(n, r)[1] for n, r in
              (("alice", Role.OWNER), ("bob", Role.OWNER), ("ops", Role.OPERATOR))}
    check = ListingCheck(tmp_path / "checks", ImageScan(ocr=False))
    app = create_app(registry, ImageStore.at_state_dir(tmp_path), accounts, check=check)
    with serve(app) as base:
        yield base, tokens, registry, accounts
    check.close()
    registry.close()


def signed_in(base: str, token: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    r = http.post(f"{base}/ui/login", data={"csrf": session_csrf(http, base), "token": token})
    assert r.status_code == 200 and r.url.endswith("/ui/brands"), r.text
    return http, csrf_of(r.text)


def register(http, base, csrf, brand_id="acme", files=(), **fields):
    data = {"csrf": csrf, "brand_id": brand_id, "name": brand_id.title(), "trademarks": "ACME\nAcme Pro",
            "enforcement": "review", **fields}
    return http.post(f"{base}/ui/brands", data=data, files=list(files) or [("logo", ("", b"", "application/octet-stream"))])


def test_sign_in_session_cookie_and_sign_out(portal):
    base, tokens, _reg, _acc = portal
    http = requests.Session()
    csrf = session_csrf(http, base)
    before = http.cookies["zs_portal"]
    r = http.post(f"{base}/ui/login", data={"csrf": csrf, "token": "zs_not-a-token"})
    assert r.status_code == 401 and "not valid" in r.text
    r = http.post(f"{base}/ui/login", data={"csrf": csrf, "token": tokens["ops"]})
    assert r.status_code == 401 and "for brand owners" in r.text
    r = http.post(f"{base}/ui/login", data={"csrf": csrf, "token": tokens["alice"]}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/brands"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    after = http.cookies["zs_portal"]
    assert after != before                      # a new session id at sign-in (no fixation)
    page = http.get(f"{base}/ui/brands")
    assert 'id="who">alice<' in page.text and tokens["alice"] not in page.text + cookie
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and page.headers["cache-control"] == "no-store"
    # the session planted before sign-in opens nothing
    planted = requests.get(f"{base}/ui/brands", cookies={"zs_portal": before}, allow_redirects=False)
    assert planted.status_code == 303 and planted.headers["location"] == "/ui/login"
    r = http.post(f"{base}/ui/logout", data={"csrf": csrf_of(page.text)})
    assert r.url.endswith("/ui/login")
    stale = requests.get(f"{base}/ui/brands", cookies={"zs_portal": after}, allow_redirects=False)
    assert stale.status_code == 303


def test_forged_posts_are_refused(portal):
    base, tokens, registry, _acc = portal
    http, csrf = signed_in(base, tokens["alice"])
    assert register(http, base, csrf).status_code == 200
    attempts = {
        "no token": {},
        "wrong token": {"csrf": "x" * 43},
        "another session's token": {"csrf": signed_in(base, tokens["bob"])[1]},
    }
    for why, data in attempts.items():
        r = http.post(f"{base}/ui/brands/acme/withdraw", data=data)
        assert r.status_code == 403 and "CSRF token" in r.text, why
    # the right token from a page of another origin (a form on an attacker's site)
    r = http.post(f"{base}/ui/brands/acme/withdraw", data={"csrf": csrf}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.text
    r = http.post(f"{base}/ui/brands/acme/withdraw", data={"csrf": csrf}, headers={"Origin": "null"})
    assert r.status_code == 403
    assert not registry.get("acme").brand.deleted
    r = http.post(f"{base}/ui/brands/acme/withdraw", data={"csrf": csrf}, headers={"Origin": base})
    assert r.status_code == 200 and registry.get("acme").brand.deleted


def test_register_with_a_logo_waits_for_the_operator(portal):
    base, tokens, registry, _acc = portal
    http, csrf = signed_in(base, tokens["alice"])
    logo = png((10, 120, 200))
    r = register(http, base, csrf, files=[("logo", ("acme.png", logo, "image/png"))], authorized_sellers="acme-store",
                 min_price_amount="25", min_price_currency="usd", enforcement="takedown")
    assert "acme v1 submitted: it waits for an operator's approval" in r.text.replace("&#39;", "'")
    e = registry.get("acme")
    assert (e.status.value, e.owner, e.live) == ("pending", "alice", None)
    assert e.brand.trademarks == ("ACME", "Acme Pro") and e.brand.authorized_sellers == {"acme-store"}
    assert (e.brand.min_price.amount, e.brand.min_price.currency) == (25.0, "USD")
    sha = sha256_hex(logo)
    assert [i.sha256 for i in e.brand.logos] == [sha] and e.requests == {Privilege.TAKEDOWN}
    assert 'data-status="pending"' in http.get(f"{base}/ui/brands").text
    img = http.get(f"{base}/ui/images/{sha}")
    assert img.status_code == 200 and img.content == logo and img.headers["content-type"] == "image/png"

    registry.approve("acme", Actor("ops", is_admin=True))
    assert 'data-status="approved"' in http.get(f"{base}/ui/brands").text
    # an edit keeps the logo by its digest, adds a photo; the next version is pending again
    form = http.get(f"{base}/ui/brands/acme").text
    assert f'name="keep_logo" value="{sha}" checked' in form
    photo = png((90, 90, 20), (64, 64))
    r = http.post(f"{base}/ui/brands", data={"csrf": csrf, "brand_id": "acme", "name": "Acme", "trademarks": "ACME",
                                             "enforcement": "review", "keep_logo": sha},
                  files=[("photo", ("p.png", photo, "image/png"))])
    assert "acme v2 submitted" in r.text
    e = registry.get("acme")
    assert (e.status.value, e.live.version, [i.sha256 for i in e.brand.logos]) == ("pending", 1, [sha])
    assert [i.sha256 for i in e.brand.product_images] == [sha256_hex(photo)]
    # what the contract refuses is said on the form, nothing is stored
    r = register(http, base, csrf, brand_id="bad", files=[("logo", ("x.png", b"<html>", "image/png"))])
    assert r.status_code == 422 and "not a PNG" in " ".join(flashes(r.text)) and registry.get("bad") is None


def test_an_owner_sees_only_their_own(portal):
    base, tokens, registry, _acc = portal
    alice, csrf = signed_in(base, tokens["alice"])
    logo = png((1, 2, 3))
    register(alice, base, csrf, files=[("logo", ("a.png", logo, "image/png"))])
    bob, bob_csrf = signed_in(base, tokens["bob"])
    assert "acme" not in bob.get(f"{base}/ui/brands").text
    assert bob.get(f"{base}/ui/brands/acme").status_code == 403
    assert bob.get(f"{base}/ui/images/{sha256_hex(logo)}").status_code == 404
    r = register(bob, base, bob_csrf)                              # taking over alice's brand id
    assert r.status_code == 403 and "owned by another account" in r.text and registry.get("acme").owner == "alice"
    assert bob.post(f"{base}/ui/brands/acme/withdraw", data={"csrf": bob_csrf}).status_code == 403
    r = bob.post(f"{base}/ui/check", data={"csrf": bob_csrf, "title": "ACME headphones"})
    assert 'id="no-match"' not in r.text and "no brands yet" in r.text      # alice's marks are not bob's to probe


def test_a_rotated_token_ends_the_session(portal):
    base, tokens, _reg, accounts = portal
    http, _csrf = signed_in(base, tokens["alice"])
    accounts.rotate("alice")
    r = http.get(f"{base}/ui/brands", allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?ended=1"


def test_check_a_listing_text_and_photo(portal, tmp_path):
    base, tokens, registry, _acc = portal
    http, csrf = signed_in(base, tokens["alice"])
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray((rng.random((128, 128, 3)) * 255).astype("uint8")).save(buf, "PNG")
    photo = buf.getvalue()
    register(http, base, csrf, files=[("photo", ("p.png", photo, "image/png"))])
    r = http.post(f"{base}/ui/check", data={"csrf": csrf, "title": "Genuine ACME pro <b>headphones</b>"})
    assert '<p class="title">Genuine <mark>ACME pro</mark> &lt;b&gt;headphones&lt;/b&gt;</p>' in r.text
    assert "which matches your mark “Acme Pro”" in r.text and 'class="verdict">review<' in r.text
    r = http.post(f"{base}/ui/check", data={"csrf": csrf, "title": "Plain steel hammer"})
    assert 'id="no-match"' in r.text
    r = http.post(f"{base}/ui/check", data={"csrf": csrf, "title": "steel hammer"},
                  files=[("image", ("mine.png", photo, "image/png"))])
    assert "Image (your photo) is a copy of your product photo (perceptual-hash distance 0)" in r.text
    r = http.post(f"{base}/ui/check", data={"csrf": csrf}, files=[("image", ("x.png", b"GIF89a", "image/png"))])
    assert r.status_code == 200 and 'id="error"' in r.text
    assert not list((tmp_path / "checks").glob("check-*"))      # the uploaded photo is not kept


def test_sessions_expire_and_csrf_compares():
    now = [0.0]
    store = SessionStore(lambda: now[0], idle_s=10, absolute_s=25, max_sessions=3)
    sid, s = store.new("alice", "h")
    assert store.get(sid) is s and csrf_ok(s, s.csrf) and not csrf_ok(s, "") and not csrf_ok(None, s.csrf)
    now[0] = 9
    assert store.get(sid) is s
    now[0] = 20                                       # idle 11 s
    assert store.get(sid) is None
    sid, s = store.new("alice", "h")
    for t in (29, 38):                                # kept busy...
        now[0] = t
        assert store.get(sid) is s
    now[0] = 46                                       # ...it still ends 25 s after sign-in
    assert store.get(sid) is None
    ids = [store.new()[0] for _ in range(3)]
    store.new("bob", "h2")
    assert len(store) == 3 and store.get(ids[0]) is None      # the oldest anonymous one made room


def test_evidence_in_words_and_marked_titles():
    sig = {"kind": "trademark_text", "score": 0.9,
           "detail": {"mark": "Veltrix", "field": "title", "matched": "V3ltrix", "normalisations": ["leet"]}}
    assert str(words.signal_words(sig)) == ("The title contains “<mark>V3ltrix</mark>”, which matches your mark "
                                            "“Veltrix” (read through leet).")
    price = {"kind": "price", "detail": {"amount": 9.5, "currency": "USD", "min_price": 40}}
    assert str(words.signal_words(price)) == "Priced 9.5 USD, below your price floor of 40 USD."
    seller = {"kind": "seller", "detail": {"seller_id": "<s>", "authorized": False}}
    assert str(words.signal_words(seller)) == "Seller &lt;s&gt; is not one of your authorized sellers."
    hostile = {"kind": "trademark_text", "detail": {"mark": "<img src=x>", "matched": "<script>", "field": "title"}}
    assert "<script>" not in str(words.signal_words(hostile)) and "<img" not in str(words.signal_words(hostile))
    assert str(words.mark_text("New V3LTRIX drill <3", ["v3ltrix"])) == "New <mark>V3LTRIX</mark> drill &lt;3"
    assert words.matched_texts([sig, price]) == ["V3ltrix"]


def test_accuracy_trend_and_its_chart():
    day = 86_400_000
    state = FeedbackState(FeedbackPolicy(window_ms=10 * day))
    for i, kind in enumerate([LedgerKind.APPEAL_REJECTED, LedgerKind.APPEAL_UPHELD, LedgerKind.APPEAL_REJECTED]):
        state.apply(LedgerEvent(kind, f"l{i}", "acme", i * day))
    state.apply(LedgerEvent(LedgerKind.APPEAL_REJECTED, "l9", "acme", 30 * day))   # the first three aged out
    assert state.accuracy_trend("acme") == [(0, 1.0, 1), (day, 0.5, 2), (2 * day, 2 / 3, 3), (30 * day, 1.0, 1)]
    svg = str(words.trend_svg([{"event_time": t, "accuracy": a, "decided": n}
                               for t, a, n in state.accuracy_trend("acme")], 0.9))
    assert svg.startswith("<svg") and svg.count("<circle") == 4 and "bar 90 %" in svg
    assert "no decided removals yet" in str(words.trend_svg([], 0.9))


def test_bulk_csv_rows():
    assert _csv_rows(b"listing_id,reason\nl1,fake\n\nl2\n") == [("l1", "fake"), ("l2", "")]
    with pytest.raises(Exception, match="names no listing"):
        _csv_rows(b"listing_id\n")
    with pytest.raises(Exception, match="at most 500"):
        _csv_rows("\n".join(f"l{i}" for i in range(501)).encode())


def test_check_uses_the_published_form_of_takedown():
    check = ListingCheck()
    b = BrandReference("acme", 1, "Acme", ("ACME",), enforcement=Action.REVIEW)
    [r] = check.check("alice", [b], title="ACME drill")
    assert (r["brand_id"], r["action"], r["signals"][0]["kind"]) == ("acme", "review", "trademark_text")
    with pytest.raises(ValueError, match="image checks are off"):
        check.check("alice", [b], title="x", image=png())


def test_the_image_configuration_is_read_at_the_first_photo_check(tmp_path):
    calls = []

    def config():
        calls.append(1)
        return None

    check = ListingCheck(tmp_path, config)
    b = BrandReference("acme", 1, "Acme", ("ACME",), enforcement=Action.REVIEW)
    assert check.images_enabled and check.check("alice", [b], title="ACME drill")[0]["action"] == "review"
    assert calls == []                                  # a text check loads nothing of the image side
    with pytest.raises(ValueError, match="image checks are off"):
        check.check("alice", [b], title="x", image=png())
    assert calls == [1]
