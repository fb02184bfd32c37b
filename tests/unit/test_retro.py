"""Retroactive matching in plain Python: what a brand change asks (`brand_delta`), the one-brand
pre-filter over raw live listings, rescan records and their schema, the live-listing store, the
open flags, and the scan step's handling of rescans (decided like listings, stale ones dropped,
one for a brand version the catalogue lacks dead-lettered)."""
from __future__ import annotations

import dataclasses
import json

import orjson
import pytest

from brand_signals.catalog import Catalog
from brand_signals.feedback.context import ContextStore
from brand_signals.feedback.state import FeedbackPolicy, FeedbackState
from brand_signals.records import Action, BrandReference, ImageRef
from brand_signals.retro import (REASON_APPROVED, REASON_AUTHORISED, REASON_GAINED, REASON_UPDATED,
                                 REASON_WITHDRAWN, OpenFlags, PreFilter, brand_delta, parse_rescan, rescan_record)
from brand_signals.scanner import Scanner
from connectors.retro_worker import LiveListings
from connectors.serde import Origin
from pipelines.steps import RESCAN, RESCAN_STALE, RowKind, ScanContext, scan_records
from tests.unit.test_record_schemas import DEAD, Transitions, check_decision, validator

pytestmark = pytest.mark.unit

RESCAN_SCHEMA = validator("project/rescan.schema.json")
SHA = "ab" * 32
ACME = BrandReference("acme", 1, "Acme", ("Acme",), enforcement=Action.TAKEDOWN)


def raw(lid: str, title: str, seller: str = "s-1", **kw) -> bytes:
    return json.dumps({"listing_id": lid, "seller_id": seller, "event_time": 1000, "title": title, **kw}).encode()


def test_brand_delta_says_what_a_change_asks():
    new = brand_delta(None, ACME)
    assert (new.reason, new.probe_marks, new.recheck_open) == (REASON_APPROVED, ("Acme",), False)
    gained = brand_delta(ACME, dataclasses.replace(ACME, version=2, trademarks=("Acme", "Roadrunner"),
                                                   logos=(ImageRef("https://x/l.png", SHA),)))
    assert (gained.reason, gained.probe_marks, gained.probe_images) == (REASON_GAINED, ("Roadrunner",), {SHA})
    assert gained.recheck_open and gained.only_sellers is None
    sellers = brand_delta(ACME, dataclasses.replace(ACME, version=2, authorized_sellers=frozenset({"s-9"})))
    assert (sellers.reason, sellers.scans_live, sellers.only_sellers) == (REASON_AUTHORISED, False, {"s-9"})
    gone = brand_delta(ACME, BrandReference("acme", 3, deleted=True))
    assert (gone.reason, gone.scans_live, gone.recheck_open, gone.only_sellers) == (REASON_WITHDRAWN, False, True, None)
    dropped = brand_delta(ACME, dataclasses.replace(ACME, version=2, trademarks=("Acmex",)))
    assert dropped.probe_marks == ("Acmex",) and dropped.only_sellers is None  # every open flag re-checked too
    weaker = brand_delta(ACME, dataclasses.replace(ACME, version=2, enforcement=Action.REVIEW))
    assert (weaker.reason, weaker.scans_live, weaker.only_sellers) == (REASON_UPDATED, False, None)
    recat = brand_delta(ACME, dataclasses.replace(ACME, version=2, categories=("tools",)))
    assert recat.probe_marks == ("Acme",)     # category scoring of every mark may change
    assert brand_delta(ACME, ACME) is None    # not newer
    assert brand_delta(None, BrandReference("acme", 1, deleted=True)) is None
    back = brand_delta(BrandReference("acme", 2, deleted=True), dataclasses.replace(ACME, version=3))
    assert back.reason == REASON_APPROVED and back.recheck_open


def test_prefilter_keeps_what_the_changed_brand_could_match_and_only_that():
    v2 = dataclasses.replace(ACME, version=2, trademarks=("Acme", "Roadrunner"),
                             product_images=(ImageRef("https://x/p.jpg", SHA),))
    pre = PreFilter(v2, brand_delta(ACME, v2))
    raws = [raw("a", "Roadrunner running shoes"),                    # plain
            raw("b", "R0adrunner sneakers"),                          # leet
            raw("c", "Roadrunnr trainers"),                           # one-edit typo
            raw("d", "Running shoes", bullet_points=["fits like a Roadrunner"]),  # in the bullets
            raw("e", "Plain steel hammer"),
            raw("f", "Acme anvil"),                                   # the old mark: unchanged by v2
            raw("g", "Blue mug", images=[{"uri": "https://s/1.jpg", "sha256": SHA}]),  # a copy of the new photo
            raw("h", "Blue mug", images=[{"uri": "https://s/2.jpg", "sha256": "cd" * 32}]),
            json.dumps({"listing_id": "i", "seller_id": "s", "event_time": 1, "op": "delete"}).encode(),
            b"not json", b"[1, 2]"]
    assert [chr(ord("a") + i) for i in pre.select(raws)] == ["a", "b", "c", "d", "g"]


def test_prefilter_answers_the_same_from_its_token_memo(monkeypatch):
    """`touches` remembers each token's answer (a mark word, or a typo or look-alike of one);
    titles read again, and read with the memo cleared at every token, get the same answers."""
    from brand_signals.text import wordmarks

    v2 = dataclasses.replace(ACME, version=2, trademarks=("Acme", "Roadrunner"))
    titles = ["Roadrunner shoes", "Roadrunnr trainers", "R0adrunner trainers", "shoes trainers", "Plain shoes",
              "trainers Roadrunner", "running shoes", "Roadrunnr"]
    want = ["Roadrunner shoes", "Roadrunnr trainers", "R0adrunner trainers", "trainers Roadrunner", "Roadrunnr"]
    pre = PreFilter(v2, brand_delta(ACME, v2))
    raws = [raw(str(i), t) for i, t in enumerate(titles)]
    assert [titles[i] for i in pre.select(raws)] == want
    assert pre.index._token_touch["roadrunnr"] and not pre.index._token_touch["shoes"]
    pre._seen.clear()                          # the whole-text memo: make the tokens answer again
    assert [titles[i] for i in pre.select(raws)] == want
    monkeypatch.setattr(wordmarks, "TOKEN_CACHE_MAX", 1)
    small = PreFilter(v2, brand_delta(ACME, v2))
    assert [titles[i] for i in small.select(raws)] == want
    assert len(small.index._token_touch) <= 1


def test_prefilter_is_conservative_against_the_full_scan():
    """Every listing the full scan flags for the new mark is a candidate."""
    from brand_signals.text.wordmarks import WordMarkIndex
    from brand_signals.contract import parse_listing

    v2 = dataclasses.replace(ACME, version=2, trademarks=("Acme", "Quillon Pro"))
    pre = PreFilter(v2, brand_delta(ACME, v2))
    titles = ["Quillon Pro pen", "QUILL0N PRO nib", "Quil lon Pro", "quillon-pro refill", "Qui11on Pro",
              "Quilon Pro", "Pro pen", "Quill pen", "Quillon", "pen for Quillon Pro"]
    full = WordMarkIndex.build([v2])
    for t in titles:
        r = raw("x", t)
        flagged = any(e.brand_id == "acme" and any(s.detail.get("mark") == "Quillon Pro" for s in e.signals)
                      for e in full.match(parse_listing(r)))
        if flagged:
            assert pre.candidate(r), t


def test_rescan_records_follow_their_schema_and_parse_back():
    d = brand_delta(None, ACME)
    r = rescan_record("l1", raw("l1", "Acme anvil") + b"\n", "listings", 3, 41, d)
    obj = orjson.loads(r)
    RESCAN_SCHEMA.validate(obj)
    p = parse_rescan(obj)
    assert (p.brand_id, p.brand_version, p.reason, p.source) == ("acme", 1, REASON_APPROVED,
                                                                 {"topic": "listings", "partition": 3, "offset": 41})
    bad = dict(obj, listing={**obj["listing"], "listing_id": "other"})
    with pytest.raises(ValueError, match="listing.listing_id"):
        parse_rescan(bad)
    with pytest.raises(ValueError, match="scope.brand_version"):
        parse_rescan(dict(obj, scope={**obj["scope"], "brand_version": True}))


def test_live_listings_store_keeps_the_latest_live_record_and_its_positions(tmp_path):
    store = LiveListings(tmp_path / "retro")
    store.apply([(0, 0, raw("a", "one")), (0, 1, raw("b", "two")), (1, 0, b"garbage"), (1, 1, None)])
    store.apply([(0, 2, raw("a", "one again")),
                 (0, 3, json.dumps({"listing_id": "b", "seller_id": "s", "event_time": 2, "op": "delete"}).encode())])
    assert store.position(b"o:", 0) == 4 and store.position(b"o:", 1) == 2
    got = [(lid, p, o, orjson.loads(r)["title"]) for batch in store.scan(batch=1) for lid, p, o, r in batch]
    assert got == [("a", 0, 2, "one again")]
    store.close()
    reopened = LiveListings(tmp_path / "retro")      # a restart: the same content and positions
    assert reopened.get("a")[:2] == (0, 2) and reopened.get("b") is None and reopened.position(b"o:", 0) == 4
    reopened.close()


def test_open_flags_follow_listing_status():
    flags = OpenFlags()
    key = lambda lid, bid: json.dumps([lid, bid]).encode()  # noqa: E731
    flags.apply(key("l1", "acme"), b'{"action": "takedown", "seller_id": "s-1"}')
    flags.apply(key("l2", "acme"), b'{"action": "review", "seller_id": "s-2"}')
    flags.apply(key("l3", "acme"), b'{"action": "review", "seller_id": "s-2"}')
    flags.apply(key("l3", "acme"), b'{"action": "clear", "seller_id": "s-2"}')
    flags.apply(b"not json", b"{}")
    flags.apply(key("l4", "other"), b'{"action": "notify", "seller_id": "s-1"}')
    assert flags.of("acme") == ["l1", "l2"] and flags.of("acme", frozenset({"s-2"})) == ["l2"]
    assert len(flags) == 3


class RetroRun:
    def __init__(self, brands):
        self.ctx = ScanContext(Catalog.build(brands, version=1), Scanner("zeroscan-test"),
                               FeedbackState(FeedbackPolicy()), ContextStore())
        self.t = Transitions()
        self.offset = 0

    def catalog(self, brands, versions=None):
        cat = Catalog.build(brands, version=self.ctx.catalog.version + 1, previous=self.ctx.catalog)
        self.ctx = dataclasses.replace(self.ctx, catalog=dataclasses.replace(cat, versions=versions or {}))

    def batch(self, *records):
        origins = []
        for _ in records:
            origins.append(Origin("x", 0, self.offset))
            self.offset += 1
        rows = scan_records([r for _s, r in records], origins, self.ctx, 5000, [s for s, _r in records])
        self.t.feed(rows)
        return rows


def test_rescans_are_decided_like_listings_and_clear_on_withdrawal():
    run = RetroRun([])
    run.batch(("listing", raw("l1", "Acme anvil")), ("listing", raw("l2", "Plain hammer")))
    assert run.t.decisions == []
    run.catalog([ACME])
    d = brand_delta(None, ACME)
    rows = run.batch((RESCAN, rescan_record("l1", raw("l1", "Acme anvil"), "listings", 0, 0, d)))
    assert rows[0].kind is RowKind.DECISION
    ((lid, dec),) = run.t.decisions
    check_decision(dec)
    assert (lid, dec["action"], dec["rescan"]) == ("l1", "takedown", {"brand_id": "acme", "brand_version": 1,
                                                                     "reason": REASON_APPROVED})
    assert dec["source"] == {"topic": "listings", "partition": 0, "offset": 0} and dec["event_time"] == 1000
    # a repeated rescan (a worker restarted before it stored its position): no new decision
    run.batch((RESCAN, rescan_record("l1", raw("l1", "Acme anvil"), "listings", 0, 0, d)))
    assert len(run.t.decisions) == 1
    # withdrawn: the rescan of the open flag yields its clear
    gone = brand_delta(ACME, BrandReference("acme", 2, deleted=True))
    run.catalog([], versions={"acme": 2})
    run.batch((RESCAN, rescan_record("l1", raw("l1", "Acme anvil"), "listings", 0, 0, gone)))
    lid, clear = run.t.decisions[-1]
    check_decision(clear)
    assert (lid, clear["action"], clear["brand_id"]) == ("l1", "clear", "acme")
    assert clear["signals"][0]["detail"]["reason"] == "brand withdrawn: re-checked after brand acme v2"
    # a clear is built by the job from typed columns: its reason names the brand change
    assert REASON_WITHDRAWN.startswith("brand withdrawn")


def test_stale_rescans_do_nothing_and_ones_ahead_of_the_catalogue_are_dead_letters():
    run = RetroRun([ACME])
    d2 = brand_delta(ACME, dataclasses.replace(ACME, version=2, trademarks=("Acme", "Zorbo")))
    ahead = rescan_record("l1", raw("l1", "Zorbo kettle"), "listings", 0, 0, d2)
    rows = run.batch((RESCAN_STALE, ahead), (RESCAN, ahead), (RESCAN, b'{"listing_id": "l1"}'))
    assert [r.kind for r in rows] == [RowKind.NONE, RowKind.DEAD, RowKind.DEAD]
    for r in rows[1:]:
        DEAD.validate(orjson.loads(r.payload))
    assert "does not have that version" in orjson.loads(rows[1].payload)["reason"]
    assert "rescan scope" in orjson.loads(rows[2].payload)["reason"]
    assert run.t.decisions == []


def test_a_union_prefilter_keeps_what_each_change_keeps():
    a = BrandReference("zorbo", 1, "Zorbo", ("Zorbo",))
    b = BrandReference("quillon", 1, "Quillon", ("Quillon Pro",), product_images=(ImageRef("https://x/p.jpg", SHA),))
    raws = [raw("1", "Zorbo kettle"), raw("2", "Qu1llon Pro pen"), raw("3", "Zorb0 kettle"), raw("4", "Plain mug"),
            raw("5", "Mug", images=[{"uri": "https://s/1.jpg", "sha256": SHA}]), raw("6", "Quilon Pro refill")]
    each = set(PreFilter(a, brand_delta(None, a)).select(raws)) | set(PreFilter(b, brand_delta(None, b)).select(raws))
    union = PreFilter.union([(a, brand_delta(None, a)), (b, brand_delta(None, b))])
    assert set(union.select(raws)) >= each == {0, 1, 2, 4, 5}


def test_prefilter_in_worker_processes_gives_the_same_answers_in_order():
    from brand_signals.retro import select_batches

    v = dataclasses.replace(ACME, version=2, trademarks=("Acme", "Zorbo"))
    pre = PreFilter(v, brand_delta(ACME, v))
    batches = [[raw(f"{b}-{i}", "Zorbo kettle" if (b + i) % 3 == 0 else "Plain mug") for i in range(7)]
               for b in range(9)]
    assert list(select_batches(pre, iter(batches), 2)) == [pre.select(b) for b in batches]
