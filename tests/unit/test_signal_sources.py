"""The signal interface: the scanner runs the sources its configuration lists, a plug-in
source is one module and one configuration entry, and decide reads each kind's role from the
sources' declared types."""
from __future__ import annotations

import enum
import json

import pytest

from brand_signals.catalog import Catalog
from brand_signals.contract import listing_from_obj, parse_brand
from brand_signals.records import Evidence, Signal, SignalKind
from brand_signals.scanner import Scanner
from brand_signals.signals import BUILTIN, Role, SignalType, Signals, Stage
from brand_signals.sources import DEFAULT, load, parse

pytestmark = pytest.mark.unit


class ColourKind(enum.Enum):
    TRADE_DRESS = "trade_dress"


TRADE_DRESS = SignalType(ColourKind.TRADE_DRESS, Role.PRESENTS)


class TradeDressSource:
    """A plug-in: a brand's signature colour named in the title presents the brand."""

    name = "trade_dress"
    stage = Stage.CONTENT
    types = (TRADE_DRESS,)
    builds = 0

    def wants(self, listing):
        return "tiffany blue" in listing.title.lower()

    def build(self, catalog, previous):
        type(self).builds += 1
        source = self

        class Index:
            def find(self, listings, batch):
                source.asked.append(len(listings))
                return [[Evidence("acme", (Signal(ColourKind.TRADE_DRESS, 0.85, {"colour": "tiffany blue"}),))]
                        for _ in listings]

            def close(self):
                pass
        return Index()

    def __init__(self):
        self.asked: list[int] = []


def brand(**kw):
    return parse_brand(json.dumps({"brand_id": "acme", "version": 1, "name": "Acme", "trademarks": ["Acme"],
                                   "enforcement": "takedown", **kw}))


def listing(i, title, **kw):
    return listing_from_obj({"listing_id": f"l{i}", "seller_id": "s-1", "event_time": 1, "title": title, **kw})


@pytest.mark.parametrize("value, names", [
    ("wordmarks,images,feedback,price,seller", DEFAULT),                       # the default
    (" wordmarks , price ", ("wordmarks", "price")),                           # spaces, a subset
    ("wordmarks,tests.unit.test_signal_sources:TradeDressSource",
     ("wordmarks", "tests.unit.test_signal_sources:TradeDressSource")),        # a plug-in
])
def test_the_configured_list(value, names):
    assert parse(value) == names


@pytest.mark.parametrize("value, why", [
    ("", "no signal source"),          # nothing listed
    ("wordmarks,logos", "unknown"),    # not a built-in name, not module:Class
    ("price,price", "twice"),          # listed twice
])
def test_a_bad_list_is_refused(value, why):
    with pytest.raises(ValueError, match=why):
        parse(value)


def test_a_plugin_that_cannot_be_loaded_is_refused():
    with pytest.raises(ValueError, match="cannot load"):
        load(["no_such_module.anywhere:Source"])


def test_a_plugin_source_flags_a_listing_by_its_own_kind():
    cat = Catalog.build([brand()], version=1)
    [plugin] = [s for s in load(["tests.unit.test_signal_sources:TradeDressSource"])]
    s = Scanner("test", sources=load(["wordmarks", "price", "seller"]) + [plugin])
    d1, d2, d3 = s.scan(cat, [listing(1, "Necklace in tiffany blue"), listing(2, "Plain necklace"),
                              listing(3, "Acme drill")], 0)
    assert d1 is not None and d1.brand_id == "acme" and d1.signals[0].to_json()["kind"] == "trade_dress"
    assert [x.kind for x in d1.signals[1:]] == [SignalKind.SELLER]       # the seller fact still added
    assert d2 is None and d3 is not None
    assert plugin.asked == [1]          # asked only about the listing it wants
    s.scan(cat, [listing(1, "Necklace in tiffany blue")], 0)
    assert plugin.asked == [1]          # an unchanged re-post is answered from the memo


def test_sources_left_out_of_the_configuration_are_not_run():
    cat = Catalog.build([brand(min_price={"amount": 100, "currency": "USD"})], version=1)
    x = listing(1, "Acme drill", price={"amount": 5, "currency": "USD"})
    full = Scanner("test").scan(cat, [x], 0)[0]
    bare = Scanner("test", sources=load(["wordmarks"])).scan(cat, [x], 0)[0]
    assert [s.kind for s in full.signals][-2:] == [SignalKind.PRICE, SignalKind.SELLER]
    assert all(s.kind is SignalKind.TRADEMARK_TEXT for s in bare.signals) and bare.score < full.score
    assert Scanner("test", sources=load(["price", "seller"])).scan(cat, [x], 0) == [None]  # facts present nothing


def test_a_kind_declared_twice_with_different_roles_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        Signals([SignalType(SignalKind.PRICE, Role.SUPPORTS), SignalType(SignalKind.PRICE, Role.PRESENTS)])


def test_the_builtin_roles():
    assert BUILTIN.presents == {SignalKind.TRADEMARK_TEXT, SignalKind.BRAND_FIELD, SignalKind.LOGO,
                                SignalKind.OCR_TEXT, SignalKind.IMAGE_COPY, SignalKind.FEEDBACK_NEIGHBOR,
                                SignalKind.BRAND_REMOVAL}
    assert BUILTIN.supports == {SignalKind.PRICE, SignalKind.SELLER}
    assert BUILTIN.notes == {SignalKind.IMAGE_ERROR} and BUILTIN.takedown == {SignalKind.FEEDBACK_NEIGHBOR}
    assert {t.kind for src in load(DEFAULT, images=lambda c: None) for t in src.types} == set(BUILTIN.by_kind)
