"""Brand updates cost only what changed: memo entries stay valid for brands that did not change,
are re-checked against the changed brand alone, and give what a fresh scan gives."""
from __future__ import annotations

import dataclasses
import json
import random

import orjson
import pytest

from benchmarks.traffic import Traffic, brand_records
from brand_signals.catalog import RECHECK_MAX_BRANDS, Catalog
from brand_signals.contract import listing_from_obj, loads, parse_brand
from brand_signals.records import Action, ImageRef
from brand_signals.scanner import Scanner

pytestmark = pytest.mark.unit

ACME = {"brand_id": "acme", "name": "Acme", "trademarks": ["Acme"], "enforcement": "takedown", "version": 1}
VELTRIX = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown",
           "version": 1}


def brand(d: dict, **kw):
    return parse_brand(json.dumps({**d, **kw}))


def listing(i: int, title: str, **kw):
    return listing_from_obj(loads(json.dumps({"listing_id": f"l{i}", "seller_id": "s-1", "event_time": 1000 + i,
                                              "title": title, **kw}).encode()))


def flagged(scanner: Scanner, cat: Catalog, listings) -> list[str | None]:
    return [d.brand_id if d is not None else None for d in scanner.scan(cat, listings, 0)]


def test_a_new_mark_flags_a_memoised_clean_listing_and_other_entries_survive():
    v1 = Catalog.build([brand(ACME), brand(VELTRIX)], version=1)
    s = Scanner("test")
    clean = listing(1, "Zorblat wireless earbuds")
    acme = listing(2, "Acme cordless drill")
    veltrix = listing(3, "Veltrix headphones")
    assert flagged(s, v1, [clean, acme, veltrix]) == [None, "acme", "veltrix"]
    assert flagged(s, v1, [clean, acme, veltrix]) == [None, "acme", "veltrix"] and s.memo_misses == 3
    v2 = Catalog.build([brand(ACME, trademarks=["Acme", "Zorblat"], version=2), brand(VELTRIX)], version=2,
                       previous=v1)
    assert flagged(s, v2, [clean, acme, veltrix]) == ["acme", "acme", "veltrix"]
    # the clean listing that now shows the new mark and the entry showing the changed brand were
    # matched again; the unrelated brand's entry was re-checked against acme alone and kept
    assert s.memo_misses == 5 and s.memo_rechecks == 1


def test_a_new_mark_flags_memoised_listings_that_show_it_disguised():
    v1 = Catalog.build([brand(ACME), brand(VELTRIX)], version=1)
    s = Scanner("test")
    xs = [listing(1, "Z o r b l a t wireless earbuds"), listing(2, "Zorbllat earbuds"), listing(3, "Z0rblat case")]
    assert flagged(s, v1, xs) == [None, None, None]
    v2 = Catalog.build([brand(ACME, trademarks=["Acme", "Zorblat"], version=2), brand(VELTRIX)], version=2,
                       previous=v1)
    want = flagged(Scanner("fresh"), v2, xs)
    assert want.count("acme") >= 2 and flagged(s, v2, xs) == want


def test_a_removed_mark_clears_a_memoised_flagged_listing():
    v1 = Catalog.build([brand(ACME, trademarks=["Acme", "Zorblat"])], version=1)
    s = Scanner("test")
    x = listing(1, "Zorblat wireless earbuds")
    assert flagged(s, v1, [x]) == ["acme"]
    v2 = Catalog.build([brand(ACME, version=2)], version=2, previous=v1)
    assert flagged(s, v2, [x]) == [None]


def test_a_policy_only_update_keeps_every_entry_and_applies_the_new_policy():
    v1 = Catalog.build([brand(ACME), brand(VELTRIX)], version=1)
    s = Scanner("test")
    xs = [listing(1, "Acme cordless drill"), listing(2, "Veltrix headphones"), listing(3, "Plain hammer")]
    s.scan(v1, xs, 0)
    v2 = Catalog.build([brand(ACME, enforcement="notify", authorized_sellers=["s-9"], version=2), brand(VELTRIX)],
                       version=2, previous=v1)
    assert v2.wordmarks is v1.wordmarks and not v2.recent     # nothing that evidence depends on changed
    misses = s.memo_misses
    ds = s.scan(v2, xs, 0)
    assert s.memo_misses == misses and s.memo_rechecks == 3
    assert ds[0].action is Action.NOTIFY and ds[0].brand_version == 2 and ds[1].brand_id == "veltrix"


def test_a_longer_mark_of_another_brand_takes_over_a_memoised_listing():
    wilson = {"brand_id": "wilson", "name": "Wilson", "trademarks": ["Wilson"], "enforcement": "takedown",
              "version": 1}
    jones = {"brand_id": "wj", "name": "WJ", "trademarks": ["Acco"], "enforcement": "takedown", "version": 1}
    v1 = Catalog.build([brand(wilson), brand(jones)], version=1)
    s = Scanner("test")
    x = listing(1, "Wilson Jones stapler")
    assert flagged(s, v1, [x]) == ["wilson"]
    v2 = Catalog.build([brand(wilson), brand(jones, trademarks=["Acco", "Wilson Jones"], version=2)], version=2,
                       previous=v1)
    assert flagged(s, v2, [x]) == flagged(Scanner("fresh"), v2, [x]) == ["wj"]


def test_a_typo_reading_taken_by_another_brands_word_is_rechecked():
    sonos = {"brand_id": "sonos", "name": "Sonos", "trademarks": ["Sonos"], "enforcement": "review", "version": 1}
    # a two-word mark from the start: the longest mark's length (a global setting) stays the same
    other = {"brand_id": "other", "name": "Other", "trademarks": ["Other Thing"], "enforcement": "review",
             "version": 1}
    v1 = Catalog.build([brand(sonos), brand(other)], version=1)
    s = Scanner("test")
    x = listing(1, "Sonas speaker")
    before = flagged(s, v1, [x])
    v2 = Catalog.build([brand(sonos), brand(other, trademarks=["Other Thing", "Sonas Audio"], version=2)],
                       version=2, previous=v1)
    assert v2.text_floor == 1
    # "sonas" is now a mark word: no longer read as a typo of Sonos, so nothing is flagged
    assert flagged(s, v2, [x]) == flagged(Scanner("fresh"), v2, [x]) == [None]
    assert s.memo_rechecks == 0 and before == ["sonos"]


def test_a_bulk_update_matches_older_entries_again():
    brands = [brand({**ACME, "brand_id": f"b{i}", "trademarks": [f"Mark{i}x"]}) for i in range(RECHECK_MAX_BRANDS + 2)]
    v1 = Catalog.build(brands, version=1)
    s = Scanner("test")
    s.scan(v1, [listing(1, "Plain hammer")], 0)
    v2 = Catalog.build([dataclasses.replace(b, trademarks=b.trademarks + ("Zz" + b.brand_id,), version=2)
                        for b in brands], version=2, previous=v1)
    assert v2.text_floor == 2
    s.scan(v2, [listing(1, "Plain hammer")], 0)
    assert s.memo_misses == 2 and s.memo_rechecks == 0


def test_images_key_changes_only_with_images():
    v1 = Catalog.build([brand(ACME)], version=1)
    v2 = Catalog.build([brand(ACME, trademarks=["Acme", "Zorblat"], version=2)], version=2, previous=v1)
    logo = dataclasses.replace(brand(ACME, version=3), logos=(ImageRef("acme.png", "ab" * 32),))
    v3 = Catalog.build([logo], version=3, previous=v2)
    assert v1.images_key == v2.images_key != v3.images_key
    assert v2.image_floor == 1 and v3.image_floor == 3


class _CountingImages:
    """An image source that finds nothing and counts how often it is built."""

    builds = 0

    def __init__(self, catalog):
        type(self).builds += 1
        self.wordmarks = None

    def find(self, listings, base_dir=None):
        return [[] for _ in listings]

    def close(self):
        pass


def test_the_image_source_is_rebuilt_only_when_images_change():
    _CountingImages.builds = 0
    s = Scanner("test", images=_CountingImages)
    x = listing(1, "Acme drill", images=[{"uri": "https://img.example/1.jpg"}])
    v1 = Catalog.build([brand(ACME)], version=1)
    s.scan(v1, [x], 0)
    v2 = Catalog.build([brand(ACME, trademarks=["Acme", "Zorblat"], version=2)], version=2, previous=v1)
    s.scan(v2, [listing(2, "Zorblat", images=[{"uri": "https://img.example/2.jpg"}])], 0)
    assert _CountingImages.builds == 1 and s._indexes["images"][1].signals.wordmarks is v2.wordmarks
    v3 = Catalog.build([dataclasses.replace(brand(ACME, version=3), logos=(ImageRef("a.png", "cd" * 32),))],
                       version=3, previous=v2)
    s.scan(v3, [listing(3, "Other", images=[{"uri": "https://img.example/3.jpg"}])], 0)
    assert _CountingImages.builds == 2


def test_incremental_memo_equals_a_fresh_scan_under_random_mark_churn():
    """Seeded churn over the benchmark's catalogue and traffic: marks added (words of listing
    titles, disguised variants, longer marks holding another brand's), removed and moved between
    brands; after every update the memoised scanner decides exactly as a fresh one."""
    rng = random.Random(5)
    records = brand_records(120)
    traffic = Traffic(records)
    listings = [listing_from_obj(loads(_line(traffic))) for _ in range(600)]
    words = sorted({w for x in listings for w in x.title.split() if len(w) >= 4 and w.isalpha()})
    brands = {b["brand_id"]: parse_brand(json.dumps(b)) for b in records}
    fixed = parse_brand(json.dumps({**ACME, "trademarks": ["Acme", "Acme Power Tools Pro"]}))  # never changed
    cat = Catalog.build([*brands.values(), fixed], version=1)
    s = Scanner("test")
    s.scan(cat, listings, 0)
    for step in range(2, 40):
        bid = rng.choice(sorted(brands))
        b = brands[bid]
        marks = list(b.trademarks)
        r = rng.random()
        if r < 0.35:
            marks.append(rng.choice(words))
        elif r < 0.5:
            other = brands[rng.choice(sorted(brands))].trademarks[0]
            marks.append(f"{other} {rng.choice(words)}")
        elif r < 0.65:
            w = rng.choice(words)
            marks.append(w[:-1] + ("a" if w[-1] != "a" else "e"))   # one edit from a title word
        elif r < 0.85 and len(marks) > 1:
            marks.pop(rng.randrange(len(marks)))
        else:
            marks[0] = brands[rng.choice(sorted(brands))].trademarks[-1]
        brands[bid] = dataclasses.replace(b, trademarks=tuple(dict.fromkeys(marks)), version=b.version + 1)
        cat = Catalog.build([*brands.values(), fixed], version=step, previous=cat)
        assert cat.text_floor == 1
        sample = rng.sample(listings, 300)
        got = [_decision(d) for d in s.scan(cat, sample, 0)]
        want = [_decision(d) for d in Scanner("fresh").scan(cat, sample, 0)]
        assert got == want, f"step {step}: brand {bid} marks {brands[bid].trademarks}"
    assert s.memo_rechecks > 1000


def _line(traffic: Traffic) -> bytes:
    return orjson.dumps(traffic.next())


def _decision(d):
    return None if d is None else (d.listing_id, d.brand_id, d.action, round(d.score, 4),
                                   tuple((x.kind, round(x.score, 4)) for x in d.signals))
