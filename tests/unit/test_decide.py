"""decide() and decide_all(): seller allow list, price floor, enforcement mapping, deleted brands, one
decision per brand (the strongest last)."""
from __future__ import annotations

import pytest

from brand_signals.decide import ENFORCE_SCORE, REVIEW_SCORE, action_for, combine, decide, decide_all
from brand_signals.records import (
    Action,
    BrandReference,
    Evidence,
    Listing,
    Money,
    Op,
    Signal,
    SignalKind,
)

pytestmark = pytest.mark.unit

NOW = 1_735_689_600_000


def brand(bid: str, enforcement: Action = Action.TAKEDOWN, min_price: Money | None = None,
          deleted: bool = False) -> BrandReference:
    return BrandReference(brand_id=bid, version=3, name=bid, trademarks=(bid,),
                          authorized_sellers=frozenset({f"auth-{bid}"}), min_price=min_price,
                          enforcement=enforcement, deleted=deleted)


def listing(seller: str = "s-1", price: Money | None = None, op: Op = Op.UPSERT) -> Listing:
    return Listing(listing_id="l1", seller_id=seller, event_time_ms=NOW - 5, op=op, title="t", price=price)


def text(bid: str, score: float) -> Evidence:
    return Evidence(bid, (Signal(SignalKind.TRADEMARK_TEXT, score, {"mark": bid}),))


@pytest.mark.parametrize("scores, expected", [
    ([], 0.0),                    # no evidence
    ([0.95], 0.95),               # one signal
    ([0.5, 0.5], 0.75),           # independent evidence adds up
    ([1.7, -0.2], 1.0),           # out-of-range scores are clamped
])
def test_combine(scores, expected):
    assert combine(scores) == pytest.approx(expected)


@pytest.mark.parametrize("score, enforcement, action", [
    (0.95, Action.TAKEDOWN, Action.TAKEDOWN),   # confident: the brand's own enforcement
    (0.95, Action.NOTIFY, Action.NOTIFY),       # confident, brand only wants notices
    (0.95, Action.REVIEW, Action.REVIEW),       # confident, brand wants review
    (0.7, Action.TAKEDOWN, Action.REVIEW),      # middling: a takedown brand gets a review
    (0.7, Action.NOTIFY, Action.NOTIFY),        # middling: never stronger than asked
    (0.49, Action.TAKEDOWN, None),              # weak: nothing emitted
    (ENFORCE_SCORE, Action.TAKEDOWN, Action.TAKEDOWN),  # threshold is inclusive
    (REVIEW_SCORE, Action.TAKEDOWN, Action.REVIEW),     # threshold is inclusive
])
def test_enforcement_mapping(score, enforcement, action):
    assert action_for(score, enforcement) is action


def test_flags_unauthorized_seller_with_brand_version_and_time():
    d = decide(listing(), [text("sony", 0.95)], {"sony": brand("sony")}, NOW, model_version="m1")
    assert d is not None
    assert (d.brand_id, d.action, d.decided_at, d.brand_version, d.model_version) == \
        ("sony", Action.TAKEDOWN, NOW, 3, "m1")
    assert d.score == pytest.approx(0.95)
    assert [s.kind for s in d.signals] == [SignalKind.TRADEMARK_TEXT, SignalKind.SELLER]


def test_authorized_seller_is_not_flagged():
    assert decide(listing("auth-sony"), [text("sony", 0.99)], {"sony": brand("sony")}, NOW) is None


def test_authorized_for_one_brand_still_flagged_for_another():
    d = decide(listing("auth-sony"), [text("sony", 0.99), text("dell", 0.9)],
               {"sony": brand("sony"), "dell": brand("dell")}, NOW)
    assert d is not None and d.brand_id == "dell"


@pytest.mark.parametrize("price, boosted, reason", [
    (Money(5.0, "USD"), True, "under the floor, same currency"),
    (Money(50.0, "USD"), False, "at or above the floor"),
    (Money(5.0, "EUR"), False, "another currency is not compared"),
    (None, False, "no price"),
])
def test_price_floor_boosts_presentation(price, boosted, reason):
    b = brand("sony", min_price=Money(20.0, "USD"))
    d = decide(listing(price=price), [text("sony", 0.6)], {"sony": b}, NOW)
    assert d is not None
    kinds = [s.kind for s in d.signals]
    assert (SignalKind.PRICE in kinds) is boosted, reason
    assert d.score == pytest.approx(0.8 if boosted else 0.6), reason
    assert d.action is (Action.TAKEDOWN if boosted else Action.REVIEW), reason


def test_price_alone_is_not_presentation():
    b = brand("sony", min_price=Money(20.0, "USD"))
    ev = [Evidence("sony", (Signal(SignalKind.PRICE, 0.9, {}),))]
    assert decide(listing(price=Money(1.0, "USD")), ev, {"sony": b}, NOW) is None


@pytest.mark.parametrize("brands, reason", [
    ({"sony": brand("sony", deleted=True)}, "brand withdrawn"),
    ({}, "brand unknown to this index"),
])
def test_deleted_or_unknown_brand_is_not_flagged(brands, reason):
    assert decide(listing(), [text("sony", 0.99)], brands, NOW) is None, reason


def test_deleted_listing_is_not_flagged():
    assert decide(listing(op=Op.DELETE), [text("sony", 0.99)], {"sony": brand("sony")}, NOW) is None


def test_strongest_brand_wins_and_signals_of_one_brand_combine():
    ev = [text("sony", 0.7), text("dell", 0.9),
          Evidence("sony", (Signal(SignalKind.BRAND_FIELD, 0.7, {}),))]
    d = decide(listing(), ev, {"sony": brand("sony"), "dell": brand("dell")}, NOW)
    assert d is not None and d.brand_id == "sony"
    assert d.score == pytest.approx(1 - 0.3 * 0.3)


def test_every_brand_presented_gets_its_own_decision_the_strongest_last():
    brands = {b: brand(b, e) for b, e in (("sony", Action.TAKEDOWN), ("dell", Action.NOTIFY), ("acer", Action.REVIEW))}
    ev = [text("sony", 0.95), text("dell", 0.6), text("acer", 0.99), text("asus", 0.99)]   # asus: not registered
    ds = decide_all(listing(), ev, brands, NOW)
    assert [(d.brand_id, d.action) for d in ds] == [("dell", Action.NOTIFY), ("sony", Action.TAKEDOWN),
                                                    ("acer", Action.REVIEW)]
    assert all(d.listing_id == "l1" and d.brand_version == 3 and d.decided_at == NOW for d in ds)
    assert {s.detail["mark"] for d in ds for s in d.signals if s.kind is SignalKind.TRADEMARK_TEXT} == {
        "sony", "dell", "acer"}                        # each brand's decision holds its own evidence only
    assert decide(listing(), ev, brands, NOW) == ds[-1]


def test_per_brand_decisions_follow_each_brand_s_own_policy():
    brands = {"sony": brand("sony"), "dell": brand("dell", min_price=Money(100.0, "USD"))}
    ev = [text("sony", 0.9), text("dell", 0.4)]
    cheap = listing(seller="auth-sony", price=Money(20.0, "USD"))   # authorized for sony, under dell's floor
    assert [(d.brand_id, d.action) for d in decide_all(cheap, ev, brands, NOW)] == [("dell", Action.REVIEW)]
    assert decide_all(listing(), ev, brands, NOW)[0].brand_id == "sony"   # dell too weak without the floor
    assert decide_all(listing(op=Op.DELETE), ev, brands, NOW) == []


def test_equal_scores_keep_the_first_brand_strongest():
    brands = {"sony": brand("sony"), "dell": brand("dell")}
    ds = decide_all(listing(), [text("sony", 0.9), text("dell", 0.9)], brands, NOW)
    assert [d.brand_id for d in ds] == ["dell", "sony"]
    assert decide(listing(), [text("sony", 0.9), text("dell", 0.9)], brands, NOW).brand_id == "sony"


def test_weak_evidence_is_not_flagged():
    assert decide(listing(), [text("sony", 0.35)], {"sony": brand("sony")}, NOW) is None


@pytest.mark.parametrize("score, action, reason", [
    (0.9, Action.TAKEDOWN, "a confident near-duplicate of a removed listing: taken down, as the owner asked"),
    (0.6, Action.NOTIFY, "a weak one follows the brand's own enforcement"),
])
def test_near_duplicate_of_a_removal_follows_the_removal(score, action, reason):
    ev = [Evidence("b", (Signal(SignalKind.FEEDBACK_NEIGHBOR, score, {"removed_listing_id": "x"}),))]
    d = decide(listing(), ev, {"b": brand("b", Action.NOTIFY)}, NOW)
    assert d.action is action, reason
