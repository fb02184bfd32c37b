"""The portal end to end, in headless Chromium, on the real broker and the streaming job: a brand
owner signs in and registers a brand with a logo; the operator approves it (granting takedown and
self-service removal); a listing produced to Kafka is scanned by the job and its signal appears
on the owner's page with the matched text marked; the owner removes it in one click and sees the
outcome in the removal history, removes two more from a CSV file, and, once reviewers have
answered the sellers' appeals, sees the accuracy and its trend on the standing page. Writes the screenshots of the signals, history and standing pages."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from connectors.feedback_io import SignalIndex
from connectors.kafka_io import consume, produce_lines
from tests.integration.test_api import start_api  # noqa: F401 (a fixture)
from tests.integration.test_kafka_job import listing, start_job, stop, wait_committed
from tests.portal_support import chromium, png, shoot, sign_in, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _id(driver, element_id):
    return driver.find_element(By.ID, element_id)


def _wait_flash(driver, text: str):
    """Until the page shows a success notice containing `text`. The notice is read inside the
    wait: right after a submit the previous page (with the previous notice) may still be the one
    shown, and its elements go stale when the answer arrives."""
    return wait_for(driver, lambda d: any(text in f.text for f in _css(d, ".flash.ok")))


def test_signal_appears_is_removed_and_the_outcome_is_shown(start_api, kafka_settings, tmp_path):  # noqa: F811
    s = kafka_settings
    api = start_api()
    logo = tmp_path / "veltrix.png"
    logo.write_bytes(png((30, 30, 30), (96, 96), "VELTRIX"))
    with chromium() as browser:
        sign_in(browser, api.base, api.tokens["alice"])
        browser.get(f"{api.base}/ui/brands/new")
        _id(browser, "brand_id").send_keys("veltrix")
        _id(browser, "name").send_keys("Veltrix")
        _id(browser, "trademarks").send_keys("Veltrix")
        _id(browser, "logo").send_keys(str(logo))
        Select(_id(browser, "enforcement")).select_by_value("takedown")
        _id(browser, "save").click()
        wait_for(browser, lambda d: _css(d, "#brand-veltrix"))
        assert _css(browser, "#brand-veltrix .status")[0].text.lower() == "pending"
        api.approve("veltrix", "takedown", "self_service_removal")
        browser.refresh()
        assert _css(browser, "#brand-veltrix .status")[0].text.lower() == "approved"

        produce_lines(s.bootstrap, s.topics.listings, [
            listing(1, "Veltrix cordless drill 18V, two batteries", seller="s-7"),
            listing(2, "Plain steel hammer", seller="s-8"),
            listing(3, "Veltrix angle grinder 125mm", seller="s-9"),
            listing(4, "Veltrix drill bit set, 20 pieces", seller="s-9"),
        ], "listing_id")
        job = start_job(s, "job.log")
        try:
            wait_committed(s, job)
            browser.get(f"{api.base}/ui/signals")
            wait_for(browser, lambda d: len(_css(d, "section.signal")) == 3, timeout_s=60, reload=True)
            card = _id(browser, "signal-l1")
            assert not _css(browser, "#signal-l2")
            assert [m.text for m in card.find_elements("css selector", ".evidence mark")] == ["Veltrix"]
            assert "which matches your mark “Veltrix”" in card.text and "Seller s-7 is not one of" in card.text
            assert card.find_element("css selector", ".action").text.lower() == "takedown"
            shoot(browser, "signals")

            card.find_element("css selector", "input[name=reason]").send_keys("counterfeit: not our model")
            card.find_element("css selector", "button.remove").click()
            _wait_flash(browser, "removal of l1 submitted")
            # the other two from a CSV file
            sheet = tmp_path / "removals.csv"
            sheet.write_text("listing_id,reason\nl3,copy of our grinder\nl4,fake bits\n")
            _css(browser, "input[name=csv]")[0].send_keys(str(sheet))
            _css(browser, "form[action$='/signals/bulk'] button")[0].click()
            _wait_flash(browser, "2 removal(s) of veltrix submitted")

            browser.get(f"{api.base}/ui/history")
            row = wait_for(browser, lambda d: _css(d, "#history tr[data-listing=l1]"), timeout_s=60, reload=True)[0]
            assert row.get_attribute("data-kind") == "removal_accepted"
            assert "taken down" in row.text and "counterfeit: not our model" in row.text and "alice" in row.text
            # the scanner's decision now carries the owner's removal
            browser.get(f"{api.base}/ui/signals")
            wait_for(browser, lambda d: "Removed at your request." in _id(d, "signal-l1").text, timeout_s=60,
                     reload=True)

            browser.get(f"{api.base}/ui/history")
            wait_for(browser, lambda d: len(_css(d, "#history tr[data-kind=removal_accepted]")) == 3, timeout_s=60,
                     reload=True)
            # reviewers answer the sellers' appeals: two removals stand, one is overturned
            for lid, upheld in (("l1", False), ("l3", True), ("l4", False)):
                r = api.post("rev", "/v1/appeals", {"brand_id": "veltrix", "listing_id": lid, "upheld": upheld,
                                                    "reason": "the seller's papers" + (" hold" if upheld else " are forged")})
                assert r.status_code == 202, r.text
            browser.get(f"{api.base}/ui/standing")
            wait_for(browser, lambda d: _css(d, "#standing-veltrix .accuracy")[0].text == "67 %", timeout_s=60,
                     reload=True)
            assert len(_css(browser, "#standing-veltrix svg.chart circle")) == 3
            shoot(browser, "standing")
            browser.get(f"{api.base}/ui/history")
            row = wait_for(browser, lambda d: _css(d, "#history tr[data-kind=appeal_upheld]"), timeout_s=30,
                           reload=True)[0]
            assert row.get_attribute("data-listing") == "l3" and "reinstated on appeal" in row.text
            shoot(browser, "history")
        finally:
            stop(job)
    # where a decision names its source record, the portal reads the listing back (its title, images)
    [(part, offset)] = [(p, o) for k, _v, p, o in consume(s.bootstrap, s.topics.listings, stop_at_end=True)
                        if k == b"l1"]
    index = SignalIndex(s.bootstrap, s.topics.decisions, s.topics.listings)
    try:
        got = index.listing_of({"listing_id": "l1", "source": {"partition": part, "offset": offset}})
        assert got["title"] == "Veltrix cordless drill 18V, two batteries"
        assert index.listing_of({"listing_id": "l1"}) is None
    finally:
        index.close()
