"""The per-worker context store: presentations and absences remembered, merged, and kept across
a reopen (rocksdict in a temp folder)."""
from __future__ import annotations

import pytest

from brand_signals.feedback import NO_FINGERPRINT, Fingerprint, ListingContext, merge_context
from connectors.context_store import RocksContextStore

pytestmark = pytest.mark.unit


def test_absences_and_presentations_are_remembered(tmp_path):
    fp = Fingerprint(frozenset({1, 2}), frozenset(), {2: 3.0})
    store = RocksContextStore(tmp_path)
    store.remember(ListingContext("a", "s-1", frozenset(), NO_FINGERPRINT))          # presented nothing
    store.remember(ListingContext("b", "s-2", frozenset({"acme"}), fp))
    store.remember(ListingContext("b", "s-2", frozenset(), NO_FINGERPRINT))          # edited: now nothing
    assert store.get("a") == ListingContext("a", "s-1", frozenset(), NO_FINGERPRINT)
    assert store.get("b") == ListingContext("b", "s-2", frozenset({"acme"}), fp)     # what it ever showed
    assert store.get("c") is None
    store.close()
    again = RocksContextStore(tmp_path)
    try:
        assert again.get("a").presented == frozenset() and again.get("b").fingerprint == fp
    finally:
        again.close()


def test_a_batch_is_merged_in_order_and_written_at_once(tmp_path):
    fp = Fingerprint(frozenset({1}), frozenset(), {})
    store = RocksContextStore(tmp_path)
    store.remember(ListingContext("old", "s-0", frozenset({"acme"}), fp))
    store.close()
    store = RocksContextStore(tmp_path)     # "old" is in the store only, not in memory
    store.remember_many([
        ListingContext("b", "s-2", frozenset({"acme"}), fp),
        ListingContext("b", "s-2", frozenset({"veltrix"}), NO_FINGERPRINT),   # twice in one batch
        ListingContext("old", "s-0", frozenset(), NO_FINGERPRINT),
        ListingContext("new", "s-3", frozenset(), NO_FINGERPRINT),
    ])
    store.close()
    again = RocksContextStore(tmp_path)
    try:
        assert again.get("b").presented == frozenset({"acme", "veltrix"})
        assert again.get("old") == ListingContext("old", "s-0", frozenset({"acme"}), fp)
        assert again.get("new").presented == frozenset()
    finally:
        again.close()


def test_merge_returns_the_old_context_when_nothing_changes():
    fp = Fingerprint(frozenset({1}), frozenset(), {})
    old = ListingContext("a", "s-1", frozenset({"acme"}), fp)
    assert merge_context(old, ListingContext("a", "s-1", frozenset({"acme"}), fp)) is old
    assert merge_context(old, ListingContext("a", "s-1", frozenset(), NO_FINGERPRINT)) is old   # an absence
    assert merge_context(old, ListingContext("a", "s-9", frozenset(), NO_FINGERPRINT)).seller_id == "s-9"
    grown = merge_context(old, ListingContext("a", "s-1", frozenset({"veltrix"}), NO_FINGERPRINT))
    assert grown.presented == frozenset({"acme", "veltrix"}) and grown.fingerprint == NO_FINGERPRINT
    nothing = ListingContext("b", "s-2", frozenset(), NO_FINGERPRINT)
    assert merge_context(nothing, ListingContext("b", "s-2", frozenset(), NO_FINGERPRINT)) is nothing
