"""What the portal's tests share: the API app on a live uvicorn server on a free loopback port,
and headless Chromium from Debian's packages driven through its chromedriver (Selenium, with
the driver's path given, so selenium-manager never looks for a driver on the network)."""
from __future__ import annotations

import io
import re
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import uvicorn
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def png(color=(200, 30, 30), size=(48, 48), text: str | None = None) -> bytes:
    img = Image.new("RGB", size, color)
    if text:
        from PIL import ImageDraw
        ImageDraw.Draw(img).text((4, size[1] // 3), text, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@contextmanager
def serve(app):
    """The app on 127.0.0.1 (a free port) until the block ends; yields its base url."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def chromium(width: int = 1100, height: int = 900):
    """Headless Chromium with a fresh profile, nothing fetched in the background."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="zeroscan-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def sign_in(driver, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    wait_for(driver, lambda d: d.current_url.endswith("/ui/brands"))


# What chromedriver answers, in place of a stale element reference, for an element of a page
# that a navigation has just replaced (SeleniumHQ/selenium#15401, #12221): an "unknown error"
# carrying the DevTools protocol's message.
_STALE_AS_UNKNOWN = ("Node with given id does not belong to the document", "No node with given id found")


def _stale(exc) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    return isinstance(exc, StaleElementReferenceException) or any(m in (exc.msg or "") for m in _STALE_AS_UNKNOWN)


def wait_for(driver, cond, timeout_s: float = 20.0, reload: bool = False, every_s: float = 0.25):
    """Until `cond(driver)` is truthy (reloading the page between tries when asked); an element
    not there yet, or one of the page being replaced (the next page still loading), is a falsy
    try. Any other driver error is raised."""
    from selenium.common.exceptions import NoSuchElementException, WebDriverException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = cond(driver)
        except (NoSuchElementException, IndexError):
            got = None
        except WebDriverException as exc:
            if not _stale(exc):
                raise
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s on {driver.current_url}: "
                                 f"{driver.find_element('tag name', 'body').text[:2000]}")
        time.sleep(every_s)
        if reload:
            driver.refresh()


def shoot(driver, name: str, width: int = 1100) -> None:
    """A small PNG of the whole page (docs/screenshots/NAME.png) for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(1600, max(400, int(size["height"]))), "deviceScaleFactor": 1, "mobile": False})
    try:
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    _shrink(path)


def _shrink(path: Path) -> None:
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS)
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def session_csrf(http: requests.Session, base: str) -> str:
    html = http.get(f"{base}/ui/login", timeout=10).text
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)
