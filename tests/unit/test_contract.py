"""Contract parsing: every rule of listing/brand/feedback schemas, hostile values, and agreement
with the normative JSON Schemas (jsonschema as the oracle)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from brand_signals.contract import (
    MAX_RECORD_BYTES,
    ContractError,
    parse_brand,
    parse_feedback,
    parse_listing,
)
from brand_signals.records import Action, FeedbackKind, Op

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[2] / "brand_signals" / "schemas"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract"


def _validator(name: str):
    resources = [(json.loads(p.read_text())["$id"], Resource.from_contents(json.loads(p.read_text())))
                 for p in SCHEMAS.glob("*.schema.json")]
    registry = Registry().with_resources(resources)
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()), registry=registry)


OK_LISTING = {"listing_id": "l1", "seller_id": "s1", "event_time": 1735689600000, "title": "Sony headphones"}


def edited(base: dict, **changes) -> dict:
    """A copy of a record with fields changed; a value of ... removes the field."""
    d = dict(base)
    for k, v in changes.items():
        if v is ...:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def L(**kw):
    return edited(OK_LISTING, **kw)


LISTING_CASES = [
    # (record, error substring or None when valid, reason)
    (L(), None, "minimal upsert"),
    (L(event_time="2025-01-01T00:00:00Z"), None, "RFC 3339 event time"),
    (L(event_time="2025-01-01T01:00:00+01:00"), None, "RFC 3339 with offset"),
    (L(op="delete", title=...), None, "delete needs no title"),
    (L(extra_field={"x": 1}), None, "unknown fields are ignored"),
    (L(price={"amount": 0, "currency": "EUR"}), None, "zero price"),
    (L(images=[{"uri": "a.jpg", "sha256": "0" * 64}] * 20), None, "20 images is the cap"),
    (L(bullet_points=["x" * 2000] * 20), None, "20 bullets of 2000"),
    (L(title="t" * 2000), None, "title at its limit"),
    (L(listing_id=...), "listing_id", "missing listing_id"),
    (L(seller_id=...), "seller_id", "missing seller_id"),
    (L(event_time=...), "event_time", "missing event_time"),
    (L(title=...), "title", "upsert without title"),
    (L(listing_id=""), "listing_id", "empty id"),
    (L(listing_id="x" * 129), "listing_id", "id too long"),
    (L(listing_id=5), "listing_id", "id of wrong type"),
    (L(seller_id=None), "seller_id", "null seller"),
    (L(event_time=-1), "event_time", "negative epoch"),
    (L(event_time=True), "event_time", "boolean is not an integer"),
    (L(event_time=1.5), "event_time", "float epoch"),
    (L(op="update"), "op", "unknown op"),
    (L(title="t" * 2001), "title", "title too long"),
    (L(title=["a"]), "title", "title of wrong type"),
    (L(brand="b" * 201), "brand", "brand too long"),
    (L(description="d" * 20001), "description", "description too long"),
    (L(bullet_points=["x"] * 21), "bullet_points", "too many bullets"),
    (L(bullet_points=["x" * 2001]), "bullet_points", "bullet too long"),
    (L(bullet_points="x"), "bullet_points", "bullets not an array"),
    (L(category="c" * 201), "category", "category too long"),
    (L(price={"amount": -0.01, "currency": "USD"}), "price.amount", "negative price"),
    (L(price={"amount": "3", "currency": "USD"}), "price.amount", "price as string"),
    (L(price={"amount": True, "currency": "USD"}), "price.amount", "price as boolean"),
    (L(price={"amount": 3, "currency": "usd"}), "price.currency", "lower-case currency"),
    (L(price={"amount": 3}), "price.currency", "price without currency"),
    (L(price=None), "price", "null price"),
    (L(images=[{"uri": "a.jpg"}] * 21), "images", "too many images"),
    (L(images=[{"uri": ""}]), "images", "empty uri"),
    (L(images=[{"uri": "u" * 2049}]), "images", "uri too long"),
    (L(images=[{"uri": "a.jpg", "sha256": "ABC"}]), "sha256", "bad digest"),
    (L(images=["a.jpg"]), "images", "image as bare string"),
    (L(marketplace="m" * 17), "marketplace", "marketplace too long"),
]


@pytest.mark.parametrize("rec,err,reason", LISTING_CASES, ids=[c[2] for c in LISTING_CASES])
def test_listing_rules(rec, err, reason):
    raw = json.dumps(rec).encode()
    if err is None:
        listing = parse_listing(raw)
        assert listing.listing_id == rec["listing_id"]
    else:
        with pytest.raises(ContractError, match=err):
            parse_listing(raw)


@pytest.mark.parametrize("rec,err,reason", LISTING_CASES, ids=[c[2] for c in LISTING_CASES])
def test_listing_rules_agree_with_schema(rec, err, reason):
    errors = list(_validator("listing.schema.json").iter_errors(rec))
    assert (not errors) == (err is None), f"{reason}: schema says {[e.message for e in errors]}"


@pytest.mark.parametrize("raw,err,reason", [
    (b"not json", "not valid UTF-8 JSON", "garbage"),
    (b'{"listing_id": "a\xff"}', "not valid UTF-8 JSON", "bad UTF-8 inside a string"),
    (b"[1, 2]", "expected a JSON object", "array at top level"),
    (b"", "not valid UTF-8 JSON", "empty"),
    (b'"x"' + b" " * (MAX_RECORD_BYTES), "limit", "over the record size cap"),
    (json.dumps(L(event_time="yesterday")).encode(), "RFC 3339", "unparseable date"),
    (json.dumps(L(event_time="2025-01-01")).encode(), "RFC 3339", "date without time"),
    (json.dumps(L(event_time="2025-01-01T00:00:00")).encode(), "offset", "time without offset"),
    (b'{"listing_id":"a","seller_id":"s","event_time":1,"title":"\\ud800"}', "UTF-8", "lone surrogate"),
], ids=lambda x: x if isinstance(x, str) and " " in x else None)
def test_listing_hostile_bytes(raw, err, reason):
    with pytest.raises(ContractError, match=err):
        parse_listing(raw)


def test_listing_values_are_typed():
    lst = parse_listing(json.dumps(L(op="upsert", price={"amount": 5, "currency": "USD"},
                                     images=[{"uri": "x.jpg"}], bullet_points=["a"],
                                     event_time="2025-01-01T00:00:01Z")).encode())
    assert lst.op is Op.UPSERT and lst.price.amount == 5.0 and lst.images[0].uri == "x.jpg"
    assert lst.event_time_ms == 1735689601000 and lst.bullet_points == ("a",)


def test_ten_thousand_images_refused_quickly():
    raw = json.dumps(L(images=[{"uri": f"i{i}.jpg"} for i in range(10_000)])).encode()
    with pytest.raises(ContractError, match="10000 images"):
        parse_listing(raw)


OK_BRAND = {"brand_id": "acme", "name": "Acme", "trademarks": ["ACME"], "version": 1}


def B(**kw):
    return edited(OK_BRAND, **kw)


BRAND_CASES = [
    (B(), None, "minimal brand"),
    (B(enforcement="takedown", categories=["shoes"], authorized_sellers=["s1"],
       min_price={"amount": 10, "currency": "USD"}, logos=[{"uri": "l.png"}]), None, "all fields"),
    (B(deleted=True, name=..., trademarks=...), None, "tombstone needs no name or marks"),
    (B(brand_id="Acme"), "brand_id", "upper case id"),
    (B(brand_id="-acme"), "brand_id", "id starting with a dash"),
    (B(brand_id="a" * 65), "brand_id", "id too long"),
    (B(version=0), "version", "version below 1"),
    (B(version=...), "version", "missing version"),
    (B(version="2"), "version", "version as string"),
    (B(name=...), "name", "missing name"),
    (B(trademarks=[]), "trademarks", "no marks"),
    (B(trademarks=[""]), "trademarks", "empty mark"),
    (B(trademarks=["x"] * 201), "trademarks", "too many marks"),
    (B(trademarks=...), "trademarks", "missing marks"),
    (B(enforcement="ban"), "enforcement", "unknown enforcement"),
    (B(deleted="yes"), "deleted", "deleted not boolean"),
    (B(authorized_sellers=[""]), "authorized_sellers", "empty seller id"),
    (B(logos=[{"uri": "l.png"}] * 101), "logos", "too many logos"),
    (B(min_price={"amount": -1, "currency": "USD"}), "min_price", "negative floor"),
]


@pytest.mark.parametrize("rec,err,reason", BRAND_CASES, ids=[c[2] for c in BRAND_CASES])
def test_brand_rules(rec, err, reason):
    raw = json.dumps(rec).encode()
    if err is None:
        b = parse_brand(raw)
        assert b.brand_id == rec["brand_id"]
    else:
        with pytest.raises(ContractError, match=err):
            parse_brand(raw)


@pytest.mark.parametrize("rec,err,reason", BRAND_CASES, ids=[c[2] for c in BRAND_CASES])
def test_brand_rules_agree_with_schema(rec, err, reason):
    errors = list(_validator("brand.schema.json").iter_errors(rec))
    assert (not errors) == (err is None), f"{reason}: schema says {[e.message for e in errors]}"


def test_brand_defaults():
    b = parse_brand(json.dumps(OK_BRAND).encode())
    assert b.enforcement is Action.NOTIFY and not b.deleted and b.authorized_sellers == frozenset()


FEEDBACK_CASES = [
    ({"kind": "brand_removal", "listing_id": "l", "brand_id": "acme", "event_time": 5}, None, "removal"),
    ({"kind": "appeal_upheld", "listing_id": "l", "brand_id": "acme", "event_time": "2025-01-01T00:00:00Z",
      "actor": "reviewer-1", "reason": "genuine"}, None, "appeal with actor"),
    ({"kind": "like", "listing_id": "l", "brand_id": "acme", "event_time": 5}, "kind", "unknown kind"),
    ({"kind": "brand_removal", "brand_id": "acme", "event_time": 5}, "listing_id", "no listing"),
    ({"kind": "brand_removal", "listing_id": "l", "brand_id": "ACME", "event_time": 5}, "brand_id", "bad brand id"),
    ({"kind": "brand_removal", "listing_id": "l", "brand_id": "acme"}, "event_time", "no time"),
    ({"kind": "brand_removal", "listing_id": "l", "brand_id": "acme", "event_time": 5, "reason": "r" * 2001},
     "reason", "reason too long"),
]


@pytest.mark.parametrize("rec,err,reason", FEEDBACK_CASES, ids=[c[2] for c in FEEDBACK_CASES])
def test_feedback_rules(rec, err, reason):
    raw = json.dumps(rec).encode()
    if err is None:
        assert parse_feedback(raw).kind is FeedbackKind(rec["kind"])
    else:
        with pytest.raises(ContractError, match=err):
            parse_feedback(raw)
    errors = list(_validator("feedback.schema.json").iter_errors(rec))
    assert (not errors) == (err is None), reason


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared contract folder is not beside this checkout")
def test_schemas_match_the_shared_contract():
    for p in SHARED.glob("*.schema.json"):
        assert json.loads(p.read_text()) == json.loads((SCHEMAS / p.name).read_text()), p.name
