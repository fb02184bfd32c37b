"""The catalogue a scan operator holds is kept out of the cyclic collector's walks
(`connectors.brand_feed.freeze_long_lived`), and what dies among the frozen objects is still
freed: at once by its reference count, or, in a reference cycle, at the next full settle."""
from __future__ import annotations

import gc
import json
import weakref

import pytest

from connectors import brand_feed
from connectors.brand_feed import FULL_SETTLE_GROWTH, FileBrandFeed, freeze_long_lived
from zeroscan.settings import DEFAULT_GC_YOUNG

pytestmark = pytest.mark.unit

BRANDS = [{"brand_id": f"b{i}", "name": f"Veltrix{i}", "trademarks": [f"Veltrix{i}", f"Quorbo{i}"],
           "enforcement": "takedown", "version": 1} for i in range(20)]


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen(monkeypatch):
    """Each test starts and ends with nothing frozen (the rest of the suite runs as before), with
    the freeze on (ZEROSCAN_FREEZE_HEAP, on unless "0")."""
    monkeypatch.setenv("ZEROSCAN_FREEZE_HEAP", "1")
    gc.unfreeze()
    brand_feed._frozen_after_full = 0
    yield
    gc.unfreeze()
    brand_feed._frozen_after_full = 0


def _tracked(obj) -> bool:
    """Whether the cyclic collector still walks `obj` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_a_brands_file_catalogue_is_frozen_and_later_objects_are_not(tmp_path):
    path = tmp_path / "brands.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in BRANDS))
    feed = FileBrandFeed(str(path))
    brands = feed.catalog.brands
    assert gc.is_tracked(brands) and not _tracked(brands)
    assert gc.get_freeze_count() > 0
    young: list[int] = []
    assert _tracked(young)


def test_an_old_catalogue_is_freed_by_its_reference_count_while_frozen(tmp_path):
    path = tmp_path / "brands.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in BRANDS))
    feed = FileBrandFeed(str(path))
    frozen = gc.get_freeze_count()
    gc.disable()   # no collection can be what frees it
    try:
        del feed
        freed = frozen - gc.get_freeze_count()
    finally:
        gc.enable()
    assert freed >= 2 * len(BRANDS)   # at least the brand records and their mark tuples


def test_a_frozen_cycle_waits_for_the_next_full_settle_and_is_freed_then():
    freeze_long_lived()                      # the first call settles everything
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    freeze_long_lived()                      # the cycle is alive: frozen with the young objects
    assert not _tracked(a)
    del a, b
    gc.collect()
    assert gone() is not None                # frozen garbage: no ordinary collection sees it
    growth = [[] for _ in range(int(gc.get_freeze_count() * FULL_SETTLE_GROWTH) + 1000)]
    freeze_long_lived()                      # the frozen objects grew past the share: full settle
    assert gone() is None
    assert not _tracked(growth)


def test_below_the_growth_share_a_settle_freezes_the_young_only():
    freeze_long_lived()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    freeze_long_lived()
    del a, b
    freeze_long_lived()                      # a few new objects: no full settle yet
    assert gone() is not None


def test_zero_turns_the_freeze_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSCAN_FREEZE_HEAP", "0")
    path = tmp_path / "brands.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in BRANDS))
    feed = FileBrandFeed(str(path))
    assert gc.get_freeze_count() == 0 and _tracked(feed.catalog.brands)


def test_the_freeze_is_on_when_the_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("ZEROSCAN_FREEZE_HEAP")
    path = tmp_path / "brands.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in BRANDS))
    feed = FileBrandFeed(str(path))
    assert gc.get_freeze_count() > 0 and not _tracked(feed.catalog.brands)


@pytest.fixture
def thresholds():
    """The collector's thresholds as they were, back after the test."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_young_collections_are_spaced_and_cyclic_garbage_is_still_freed(thresholds):
    """The scan worker's young generation (`space_young_collections(ScanConfig.gc_young)`,
    ZEROSCAN_GC_YOUNG): collections come after DEFAULT_GC_YOUNG allocations instead of 700, and
    a reference cycle that became garbage is freed by the collections that do come, with no
    explicit collect: 100,000 more two-node cycles allocated, the first one gone."""
    brand_feed.space_young_collections(DEFAULT_GC_YOUNG)
    assert gc.get_threshold() == (DEFAULT_GC_YOUNG, *thresholds[1:])
    gc.collect()
    collections = []
    gc.callbacks.append(cb := lambda phase, info: phase == "stop" and collections.append(info["generation"]))
    try:
        first = Node()
        first.other = Node()
        first.other.other = first
        gone = weakref.ref(first)
        del first
        for _ in range(100_000):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
    finally:
        gc.callbacks.remove(cb)
    assert gone() is None
    # at most 400,000 tracked allocations (each node, and its instance dict where one is made)
    # over a threshold of 50,000: a few young collections, where 700 gives hundreds
    assert 0 < len(collections) <= 400_000 // DEFAULT_GC_YOUNG + 2, collections
