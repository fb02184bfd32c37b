"""The portal in a real browser (Debian's headless Chromium through chromedriver) against the
API app on a loopback port, over a real registry and account store, no broker: sign in,
register a brand with a logo (previewed before upload, shown once stored), the operator's
approval seen by the owner, a forged form POST from another site refused, a listing checked.
Writes the screenshots of the pages it visits to docs/screenshots/."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from brand_signals.contract import brand_from_obj
from brand_signals.registry import Actor, BrandRegistry, Privilege
from connectors.image_store import ImageStore
from tests.portal_support import CHROMEDRIVER, chromium, png, serve, shoot, sign_in, wait_for
from zeroscan.accounts import AccountStore, Role
from zeroscan.api import create_app
from zeroscan.portal.check import ListingCheck

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMEDRIVER).exists(), "chromium-driver is missing: `make browser` installs it"
    with chromium() as driver:
        yield driver


@pytest.fixture
def portal(tmp_path):
    registry = BrandRegistry.at_state_dir(tmp_path, None)
    accounts = AccountStore.at_state_dir(tmp_path)
    tokens = {n: accounts.create(n, r)[1] for n, r in (("acme-owner", Role.OWNER), ("ops", Role.OPERATOR))}
    check = ListingCheck(tmp_path / "checks", None)
    app = create_app(registry, ImageStore.at_state_dir(tmp_path), accounts, check=check)
    with serve(app) as base:
        yield base, tokens, registry
    registry.close()


def _id(driver, element_id):
    return driver.find_element(By.ID, element_id)


def _css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_sign_in_register_a_brand_with_a_logo_and_check_a_listing(browser, portal, tmp_path):
    base, tokens, registry = portal
    browser.delete_all_cookies()
    browser.get(f"{base}/ui/brands")
    wait_for(browser, lambda d: d.current_url.endswith("/ui/login"))   # not signed in: to the sign-in page
    shoot(browser, "login")
    _id(browser, "token").send_keys("zs_wrong")
    _id(browser, "signin").click()
    assert "that token is not valid" in wait_for(browser, lambda d: _id(d, "error").text)
    sign_in(browser, base, tokens["acme-owner"])
    assert _id(browser, "who").text == "acme-owner"
    cookie = browser.get_cookie("zs_portal")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert browser.execute_script("return document.cookie") == ""          # out of the page's scripts' reach

    _id(browser, "register").click()
    logo = tmp_path / "acme-logo.png"
    logo.write_bytes(png((20, 80, 200), (96, 96), "ACME"))
    wait_for(browser, lambda d: _id(d, "brand_id")).send_keys("acme")
    _id(browser, "name").send_keys("Acme")
    _id(browser, "trademarks").send_keys("ACME\nAcme Pro")
    _id(browser, "authorized_sellers").send_keys("acme-official")
    _id(browser, "min_price_amount").send_keys("25")
    _id(browser, "min_price_currency").send_keys("USD")
    _id(browser, "logo").send_keys(str(logo))
    preview = wait_for(browser, lambda d: _css(d, "#logo-preview img"))     # previewed before upload
    assert preview[0].get_attribute("alt") == "acme-logo.png"
    shoot(browser, "brand_edit")
    _id(browser, "save").click()
    wait_for(browser, lambda d: _css(d, "#brand-acme"))
    assert "acme v1 submitted: it waits for an operator's approval" in browser.page_source.replace("&#39;", "'")
    assert _css(browser, "#brand-acme .status")[0].text.lower() == "pending"
    shown = _css(browser, "#brand-acme img.logo-img")[0]
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", shown) == 96
    e = registry.get("acme")
    assert e.owner == "acme-owner" and e.status.value == "pending" and len(e.brand.logos) == 1

    registry.approve("acme", Actor("ops", is_admin=True), [Privilege.SELF_SERVICE_REMOVAL])  # as from the CLI
    browser.refresh()
    assert _css(browser, "#brand-acme .status")[0].text.lower() == "approved"
    assert "self_service_removal" in _id(browser, "brand-acme").text
    shoot(browser, "brands")

    _css(browser, "nav a[href$='/ui/check']")[0].click()
    wait_for(browser, lambda d: _id(d, "check-title")).send_keys("New Acme Pro wireless headphones, acme-official box")
    _id(browser, "check").click()
    marked = wait_for(browser, lambda d: _css(d, "#results p.title mark"))
    assert [m.text for m in marked] == ["Acme Pro"]
    assert "which matches your mark “Acme Pro”" in _id(browser, "results").text
    shoot(browser, "check")


class _Attacker(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = (f'<!doctype html><form method="post" action="{self.target}">'
                f'<input name="csrf" value="guessed"></form><script>document.forms[0].submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_a):
        pass


def test_a_forged_post_from_another_site_is_refused(browser, portal):
    base, tokens, registry = portal
    registry.put(brand_from_obj({"brand_id": "acme", "version": 1, "name": "Acme", "trademarks": ["ACME"]}),
                 Actor.account("acme-owner"))
    browser.delete_all_cookies()
    sign_in(browser, base, tokens["acme-owner"])
    _Attacker.target = f"{base}/ui/brands/acme/withdraw"
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        refused = wait_for(browser, lambda d: _css(d, "#error"))
        assert "refused" in refused[0].text
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert not registry.get("acme").brand.deleted
