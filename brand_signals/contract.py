"""Parse and validate the JSON records of the data contract (`shared/contract/*.schema.json`).

Hand-written rather than a generic JSON-Schema engine because it runs once per listing on the
hot path (a generic validator costs ~20x more per record); `tests/unit/test_contract.py`
checks it against the normative schemas with `jsonschema` as the oracle. Every failure raises
`ContractError` (a `ValueError`) whose message names the field and what was wrong.
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import orjson

from brand_signals.records import (
    Action,
    BrandReference,
    FeedbackEvent,
    FeedbackKind,
    ImageRef,
    Listing,
    Money,
    Op,
)

# The largest contract-valid listing is ~110 k characters (20,000 description + 20 x 2,000
# bullets + 20 x 2,048 image uris + small fields), at most ~450 KB of UTF-8. Anything beyond
# 1 MiB cannot be valid and is refused before it is parsed.
MAX_RECORD_BYTES = 1 << 20
# Brand records may carry 1,000 product images and 200 marks: 8 MiB is far above a valid one.
MAX_BRAND_RECORD_BYTES = 8 << 20

BRAND_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")


class ContractError(ValueError):
    """A record that breaks the data contract; the message says which field and why."""


def loads(raw: bytes | str, limit: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Decode one JSON object, refusing oversize input, bad UTF-8 and non-objects."""
    if len(raw) > limit:
        raise ContractError(f"record is {len(raw)} bytes, above the {limit}-byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ContractError(f"not valid UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: dict, name: str, *, required: bool = False, min_len: int = 0, max_len: int,
         default: str = "", where: str = "") -> str:
    v = obj.get(name)
    if type(v) is str and min_len <= len(v) <= max_len:  # the common case, checked first
        return v
    name = where + name
    if v is None:
        if name in obj:
            raise ContractError(f"{name}: expected a string, got null")
        if required:
            raise ContractError(f"{name}: required, missing")
        return default
    if not isinstance(v, str):
        raise ContractError(f"{name}: expected a string, got {type(v).__name__}")
    if len(v) < min_len:
        raise ContractError(f"{name}: must not be empty")
    if len(v) > max_len:
        raise ContractError(f"{name}: {len(v)} characters, at most {max_len} allowed")
    return v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and not (isinstance(v, float) and not math.isfinite(v))


def parse_event_time(v: Any, name: str = "event_time") -> int:
    """Epoch milliseconds from an integer or an RFC 3339 date-time string (with offset)."""
    if _is_int(v):
        if v < 0:
            raise ContractError(f"{name}: must be >= 0, got {v}")
        return v
    if isinstance(v, str):
        if len(v) > 64:
            raise ContractError(f"{name}: date-time string too long")
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z"))
        except ValueError:
            raise ContractError(f"{name}: not an RFC 3339 date-time: {v[:64]!r}") from None
        if dt.tzinfo is None or "T" not in v.upper():
            raise ContractError(f"{name}: RFC 3339 needs a date, a time and an offset: {v!r}")
        return int(dt.timestamp() * 1000)
    if v is None:
        raise ContractError(f"{name}: required, missing")
    raise ContractError(f"{name}: expected epoch ms (integer) or RFC 3339 string, got {type(v).__name__}")


def _money(v: Any, name: str) -> Money:
    if not isinstance(v, dict):
        raise ContractError(f"{name}: expected an object {{amount, currency}}")
    amount, currency = v.get("amount"), v.get("currency")
    if not _is_number(amount):
        raise ContractError(f"{name}.amount: expected a finite number, got {type(amount).__name__}")
    if amount < 0:
        raise ContractError(f"{name}.amount: must be >= 0, got {amount}")
    if not isinstance(currency, str) or not CURRENCY_RE.fullmatch(currency):
        raise ContractError(f"{name}.currency: expected an ISO 4217 code such as 'USD'")
    return Money(float(amount), currency)


def _images(v: Any, name: str, max_items: int) -> tuple[ImageRef, ...]:
    if not isinstance(v, list):
        raise ContractError(f"{name}: expected an array")
    if len(v) > max_items:
        raise ContractError(f"{name}: {len(v)} images, at most {max_items} allowed")
    out = []
    for i, im in enumerate(v):
        if not isinstance(im, dict):
            raise ContractError(f"{name}[{i}]: expected an object {{uri, sha256?}}")
        uri, sha = im.get("uri"), im.get("sha256")
        if not (type(uri) is str and 1 <= len(uri) <= 2048):
            uri = _str(im, "uri", required=True, min_len=1, max_len=2048, where=f"{name}[{i}].")
        if sha is not None and (type(sha) is not str or len(sha) != 64 or not SHA256_RE.fullmatch(sha)):
            raise ContractError(f"{name}[{i}].sha256: expected 64 lower-case hex digits")
        out.append(ImageRef(uri, sha))
    return tuple(out)


def _str_list(v: Any, name: str, *, max_items: int | None, min_len: int, max_len: int,
              min_items: int = 0) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ContractError(f"{name}: expected an array of strings")
    if max_items is not None and len(v) > max_items:
        raise ContractError(f"{name}: {len(v)} items, at most {max_items} allowed")
    if len(v) < min_items:
        raise ContractError(f"{name}: needs at least {min_items} item(s)")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise ContractError(f"{name}[{i}]: expected a string, got {type(s).__name__}")
        if not min_len <= len(s) <= max_len:
            raise ContractError(f"{name}[{i}]: length {len(s)} outside {min_len}..{max_len}")
    return tuple(v)


def listing_from_obj(obj: dict[str, Any]) -> Listing:
    listing_id = _str(obj, "listing_id", required=True, min_len=1, max_len=128)
    seller_id = _str(obj, "seller_id", required=True, min_len=1, max_len=128)
    if "event_time" not in obj:
        raise ContractError("event_time: required, missing")
    event_time = parse_event_time(obj["event_time"])
    op_raw = obj.get("op", "upsert")
    try:
        op = Op(op_raw)
    except (ValueError, TypeError):
        raise ContractError(f"op: expected 'upsert' or 'delete', got {str(op_raw)[:40]!r}") from None
    title = _str(obj, "title", required=op is Op.UPSERT, max_len=2000)
    price = _money(obj["price"], "price") if "price" in obj else None
    return Listing(
        listing_id=listing_id,
        seller_id=seller_id,
        event_time_ms=event_time,
        op=op,
        title=title,
        brand=_str(obj, "brand", max_len=200),
        description=_str(obj, "description", max_len=20000),
        bullet_points=_str_list(obj["bullet_points"], "bullet_points", max_items=20, min_len=0, max_len=2000)
        if "bullet_points" in obj else (),
        category=_str(obj, "category", max_len=200),
        price=price,
        images=_images(obj["images"], "images", 20) if "images" in obj else (),
        marketplace=_str(obj, "marketplace", max_len=16),
    )


def parse_listing(raw: bytes | str) -> Listing:
    return listing_from_obj(loads(raw))


def brand_from_obj(obj: dict[str, Any]) -> BrandReference:
    brand_id = obj.get("brand_id")
    if not isinstance(brand_id, str) or not BRAND_ID_RE.fullmatch(brand_id):
        raise ContractError("brand_id: required, 1-64 characters of [a-z0-9_-] starting with a letter or digit")
    version = obj.get("version")
    if not _is_int(version) or version < 1:
        raise ContractError("version: required integer >= 1")
    deleted = obj.get("deleted", False)
    if not isinstance(deleted, bool):
        raise ContractError("deleted: expected true or false")
    enforcement_raw = obj.get("enforcement", "notify")
    if enforcement_raw not in ("takedown", "review", "notify"):
        raise ContractError(f"enforcement: expected takedown, review or notify, got {str(enforcement_raw)[:40]!r}")
    name = _str(obj, "name", required=not deleted, min_len=1, max_len=200)
    if "trademarks" in obj:
        trademarks = _str_list(obj["trademarks"], "trademarks", max_items=200, min_len=1, max_len=200, min_items=1)
    elif not deleted:
        raise ContractError("trademarks: required (at least one word mark) unless the brand is deleted")
    else:
        trademarks = ()
    return BrandReference(
        brand_id=brand_id,
        version=version,
        name=name,
        trademarks=trademarks,
        logos=_images(obj["logos"], "logos", 100) if "logos" in obj else (),
        product_images=_images(obj["product_images"], "product_images", 1000) if "product_images" in obj else (),
        categories=_str_list(obj["categories"], "categories", max_items=None, min_len=0, max_len=200)
        if "categories" in obj else (),
        authorized_sellers=frozenset(_str_list(obj["authorized_sellers"], "authorized_sellers",
                                               max_items=None, min_len=1, max_len=128))
        if "authorized_sellers" in obj else frozenset(),
        min_price=_money(obj["min_price"], "min_price") if "min_price" in obj else None,
        enforcement=Action(enforcement_raw),
        deleted=deleted,
    )


def parse_brand(raw: bytes | str) -> BrandReference:
    return brand_from_obj(loads(raw, MAX_BRAND_RECORD_BYTES))


def feedback_from_obj(obj: dict[str, Any]) -> FeedbackEvent:
    kind_raw = obj.get("kind")
    try:
        kind = FeedbackKind(kind_raw)
    except (ValueError, TypeError):
        raise ContractError(
            f"kind: expected brand_removal, appeal_upheld or appeal_rejected, got {str(kind_raw)[:40]!r}") from None
    listing_id = _str(obj, "listing_id", required=True, min_len=1, max_len=128)
    brand_id = obj.get("brand_id")
    if not isinstance(brand_id, str) or not BRAND_ID_RE.fullmatch(brand_id):
        raise ContractError("brand_id: required, 1-64 characters of [a-z0-9_-] starting with a letter or digit")
    if "event_time" not in obj:
        raise ContractError("event_time: required, missing")
    return FeedbackEvent(
        kind=kind,
        listing_id=listing_id,
        brand_id=brand_id,
        event_time_ms=parse_event_time(obj["event_time"]),
        actor=_str(obj, "actor", max_len=200),
        reason=_str(obj, "reason", max_len=2000),
    )


def parse_feedback(raw: bytes | str) -> FeedbackEvent:
    return feedback_from_obj(loads(raw))


def brand_to_obj(b: BrandReference) -> dict[str, Any]:
    """The contract JSON of a brand reference (for the `brands` topic and exports)."""
    out: dict[str, Any] = {"brand_id": b.brand_id, "version": b.version}
    if b.deleted:
        out["deleted"] = True
        return out
    out.update(name=b.name, trademarks=list(b.trademarks), enforcement=b.enforcement.value)
    if b.logos:
        out["logos"] = [_image_obj(i) for i in b.logos]
    if b.product_images:
        out["product_images"] = [_image_obj(i) for i in b.product_images]
    if b.categories:
        out["categories"] = list(b.categories)
    if b.authorized_sellers:
        out["authorized_sellers"] = sorted(b.authorized_sellers)
    if b.min_price is not None:
        out["min_price"] = {"amount": b.min_price.amount, "currency": b.min_price.currency}
    return out


def _image_obj(i: ImageRef) -> dict[str, str]:
    return {"uri": i.uri, **({"sha256": i.sha256} if i.sha256 else {})}
