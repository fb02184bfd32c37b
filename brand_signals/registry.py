"""The brand registry: the owners' source of truth for brand references, before the `brands`
topic. Every change is validated (the data contract), versioned (a newer version only), owned
(one account per brand id, claimed by the first that registers it), published through an
injected callable and only then persisted in an embedded store (rocksdict).

Plain Python: the publisher is injected (`connectors.brand_publisher` sends to Kafka), so the
rules here run and are tested without a broker.
"""
from __future__ import annotations

import enum
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from rocksdict import AccessType, Options, Rdict, WriteOptions

from brand_signals.catalog import StaleVersionError
from brand_signals.contract import ContractError, brand_from_obj, brand_to_obj
from brand_signals.records import BrandReference

log = logging.getLogger(__name__)

# The owner recorded for brands an operator registers without naming an account (bulk imports
# from the command line). '@' is outside the account-name alphabet, so no account can be it.
ADMIN_OWNER = "@admin"
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

_KEY_PREFIX = b"brand:"
# Pixels (from the image headers) of one brand's logos and product images together. A worker
# decodes every brand image when it builds its indexes (then keeps what it needs by sha256):
# 400 MP is 16 product photos of 25 MP, or 100 logos and 100 photos of 2 MP; the 1,000 product
# images of 25 MP the contract's item counts would allow are refused.
MAX_BRAND_IMAGE_PIXELS = 400_000_000
# All live brands together: 20 GP is ~2,000 photos of 10 MP, which a worker decodes once at
# start (JPEG with DCT scaling) and then only when an image changes.
MAX_CATALOG_IMAGE_PIXELS = 20_000_000_000
# Publish latency buckets: a local broker acknowledges in a few ms, a loaded cluster in tens to
# hundreds; the 30 s end is the producer's delivery timeout (connectors.brand_publisher).
_PUBLISH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def check_account_name(name: str) -> str:
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ValueError(f"account name {name[:80]!r}: 1-64 characters of [a-z0-9_-], "
                         f"starting with a letter or digit")
    return name


class NotOwnerError(ValueError):
    """The actor is not the account that owns the brand id."""


class BrandNotFoundError(ValueError):
    """No brand with that id was ever registered."""


class ImageBudgetError(ValueError):
    """A brand whose images would take the brand or the catalogue over its pixel budget."""


@dataclass(frozen=True, slots=True)
class ImageBudget:
    """Pixel budgets for brand images, checked at registration."""

    per_brand: int = MAX_BRAND_IMAGE_PIXELS
    per_catalog: int = MAX_CATALOG_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if self.per_brand < 1 or self.per_catalog < 1:
            raise ValueError(f"image budgets must be >= 1, got {self.per_brand} and {self.per_catalog}")


class AlreadyWithdrawnError(ValueError):
    """A withdrawal of a brand that is already withdrawn."""


class PublishFailedError(RuntimeError):
    """The change could not be published; the registry was left unchanged."""


class RegistryLockedError(RuntimeError):
    """Another process holds the registry open for writing."""


class ChangeKind(enum.Enum):
    REGISTERED = "registered"
    UPDATED = "updated"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change: an owner account, or the operator (admin) who may change any brand."""

    name: str
    is_admin: bool = False

    @classmethod
    def admin(cls) -> "Actor":
        return cls(ADMIN_OWNER, is_admin=True)

    @classmethod
    def account(cls, name: str) -> "Actor":
        return cls(check_account_name(name))


@dataclass(frozen=True, slots=True)
class BrandEntry:
    brand: BrandReference
    owner: str
    updated_at_ms: int
    image_pixels: int = 0      # header pixels of its logos and product images, when registered


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    entry: BrandEntry


class Publish(Protocol):
    """Sends one accepted brand record (or tombstone) on; raises when it could not."""

    def __call__(self, brand: BrandReference) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistryMetrics:
    changes: Counter
    refused: Counter
    publish_seconds: Histogram

    @classmethod
    def create(cls, collector: CollectorRegistry) -> "RegistryMetrics":
        return cls(
            changes=Counter("zeroscan_registry_changes", "Accepted brand changes", ["kind"], registry=collector),
            refused=Counter("zeroscan_registry_refused", "Refused brand changes", ["reason"], registry=collector),
            publish_seconds=Histogram("zeroscan_registry_publish_seconds", "Time to publish one brand change",
                                      buckets=_PUBLISH_BUCKETS, registry=collector),
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BrandRegistry:
    """Brand references by id, with their owner; opened on a folder (one writer process at a time)."""

    def __init__(self, path: Path, publish: Publish | None = None, *, read_only: bool = False,
                 collector: CollectorRegistry | None = None, now_ms: Callable[[], int] = _now_ms,
                 image_budget: ImageBudget = ImageBudget()) -> None:
        self.path = Path(path)
        self.image_budget = image_budget
        self._catalog_pixels: int | None = None   # live brands' image pixels, summed on first use
        self.read_only = read_only
        self.collector = collector if collector is not None else CollectorRegistry()
        self.metrics = RegistryMetrics.create(self.collector)
        self._publish = publish
        self._now_ms = now_ms
        self._lock = threading.Lock()
        opts = Options(raw_mode=True)
        if read_only:
            if not (self.path / "CURRENT").exists():
                raise FileNotFoundError(f"no brand registry at {self.path} (nothing registered yet)")
            self._db = Rdict(str(self.path), opts, access_type=AccessType.read_only())
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._db = Rdict(str(self.path), opts)
            except Exception as e:  # rocksdict raises a bare Exception for a held LOCK file
                if "lock" in str(e).lower():
                    raise RegistryLockedError(
                        f"brand registry {self.path} is open for writing in another process "
                        f"(is `zeroscan api serve` running?); read-only commands still work") from None
                raise
            wo = WriteOptions()
            wo.sync = True  # an accepted change is on disk before the caller hears so
            self._db.set_write_options(wo)

    @classmethod
    def at_state_dir(cls, state_dir: Path, publish: Publish | None = None, **kw: Any) -> "BrandRegistry":
        return cls(Path(state_dir) / "registry", publish, **kw)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "BrandRegistry":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------

    def get(self, brand_id: str) -> BrandEntry | None:
        raw = self._db.get(_KEY_PREFIX + brand_id.encode())
        return None if raw is None else _decode(raw)

    def entries(self, *, owner: str | None = None, include_withdrawn: bool = False) -> Iterator[BrandEntry]:
        """Entries in brand_id order, optionally only one owner's, tombstones only when asked."""
        for key, raw in self._db.items(from_key=_KEY_PREFIX):
            if not key.startswith(_KEY_PREFIX):
                break
            e = _decode(raw)
            if (owner is None or e.owner == owner) and (include_withdrawn or not e.brand.deleted):
                yield e

    # -- changes -----------------------------------------------------------------------------

    def check_put(self, brand: BrandReference, actor: Actor, image_pixels: int | None = None) -> None:
        """Raise as `put` would for ownership, version and (given the pixels) the image budget,
        without changing anything (lets a caller refuse before it does costly work such as
        storing images)."""
        current = self.get(brand.brand_id)
        self._check(brand, actor, current)
        if image_pixels is not None and not brand.deleted:
            self._check_budget(brand.brand_id, image_pixels, current)

    def catalog_image_pixels(self) -> int:
        """Header pixels of all live brands' images, as recorded when each was registered."""
        if self._catalog_pixels is None:
            self._catalog_pixels = sum(e.image_pixels for e in self.entries())
        return self._catalog_pixels

    def _check_budget(self, brand_id: str, pixels: int, current: BrandEntry | None) -> None:
        budget = self.image_budget
        if pixels > budget.per_brand:
            self.metrics.refused.labels("image_budget").inc()
            raise ImageBudgetError(f"brand {brand_id}: its logos and product images have {pixels} pixels in all, "
                                   f"above the per-brand limit of {budget.per_brand}; send fewer or smaller images")
        others = self.catalog_image_pixels() - (current.image_pixels if current and not current.brand.deleted else 0)
        if others + pixels > budget.per_catalog:
            self.metrics.refused.labels("image_budget").inc()
            raise ImageBudgetError(f"brand {brand_id}: its {pixels} image pixels would take the catalogue to "
                                   f"{others + pixels}, above the catalogue limit of {budget.per_catalog}")

    def put_obj(self, obj: dict[str, Any], actor: Actor) -> Change:
        """Validate a contract JSON object (ContractError names the field) and `put` it."""
        try:
            brand = brand_from_obj(obj)
        except ContractError:
            self.metrics.refused.labels("invalid").inc()
            raise
        return self.put(brand, actor)

    def put(self, brand: BrandReference, actor: Actor, image_pixels: int | None = None) -> Change:
        """Register, update or (with `deleted`) withdraw a brand; publish, then persist.
        `image_pixels`: the header pixels of its logos and product images, checked against
        the image budget (callers that store images give it; ImageBudgetError if over)."""
        with self._lock:
            current = self.get(brand.brand_id)
            self._check(brand, actor, current)
            pixels = 0 if brand.deleted or image_pixels is None else image_pixels
            if not brand.deleted and image_pixels is not None:
                self._check_budget(brand.brand_id, pixels, current)
            if brand.deleted:
                kind = ChangeKind.WITHDRAWN
            elif current is None or current.brand.deleted:
                kind = ChangeKind.REGISTERED
            else:
                kind = ChangeKind.UPDATED
            owner = current.owner if current is not None else actor.name
            entry = BrandEntry(brand, owner, self._now_ms(), pixels)
            self._send(brand)
            self._db[_KEY_PREFIX + brand.brand_id.encode()] = _encode(entry)
            if self._catalog_pixels is not None:
                before = current.image_pixels if current is not None and not current.brand.deleted else 0
                self._catalog_pixels += pixels - before
            self.metrics.changes.labels(kind.value).inc()
            log.info("brand %s v%d %s by %s", brand.brand_id, brand.version, kind.value, actor.name)
            return Change(kind, entry)

    def withdraw(self, brand_id: str, actor: Actor, version: int | None = None) -> Change:
        """Tombstone a brand; `version` defaults to the next one."""
        current = self.get(brand_id)
        if current is None:
            self.metrics.refused.labels("not_found").inc()
            raise BrandNotFoundError(f"brand {brand_id}: not registered, nothing to withdraw")
        v = current.brand.version + 1 if version is None else version
        return self.put(BrandReference(brand_id=brand_id, version=v, deleted=True), actor)

    def republish(self, brand_ids: list[str] | None = None) -> int:
        """Send the current record of each brand (tombstones too) again, e.g. to refill a topic."""
        if self._publish is None:
            raise ValueError("republish needs a publisher")
        n = 0
        with self._lock:
            if brand_ids:
                entries = []
                for b in brand_ids:
                    e = self.get(b)
                    if e is None:
                        raise BrandNotFoundError(f"brand {b}: not registered")
                    entries.append(e)
            else:
                entries = list(self.entries(include_withdrawn=True))
            for e in entries:
                self._send(e.brand)
                n += 1
        return n

    def _check(self, brand: BrandReference, actor: Actor, current: BrandEntry | None) -> None:
        if self.read_only:
            raise ValueError(f"brand registry {self.path} is open read-only")
        if current is not None and not actor.is_admin and current.owner != actor.name:
            self.metrics.refused.labels("not_owner").inc()
            raise NotOwnerError(f"brand {brand.brand_id}: owned by another account")
        if current is None and brand.deleted:
            self.metrics.refused.labels("not_found").inc()
            raise BrandNotFoundError(f"brand {brand.brand_id}: not registered, nothing to withdraw")
        if current is not None and brand.version <= current.brand.version:
            self.metrics.refused.labels("stale").inc()
            state = "withdrawn" if current.brand.deleted else "registered"
            raise StaleVersionError(
                f"brand {brand.brand_id}: version {brand.version} is not newer than the {state} "
                f"version {current.brand.version}; send version {current.brand.version + 1} or higher")
        if current is not None and current.brand.deleted and brand.deleted:
            self.metrics.refused.labels("already_withdrawn").inc()
            raise AlreadyWithdrawnError(f"brand {brand.brand_id}: already withdrawn at version {current.brand.version}")

    def _send(self, brand: BrandReference) -> None:
        if self._publish is None:
            return
        t0 = time.perf_counter()
        try:
            self._publish(brand)
        except Exception as e:  # any publisher failure leaves the registry unchanged; re-raised
            self.metrics.refused.labels("publish_failed").inc()
            raise PublishFailedError(
                f"brand {brand.brand_id} v{brand.version} was not published, registry unchanged: {e}") from e
        finally:
            self.metrics.publish_seconds.observe(time.perf_counter() - t0)


def _encode(e: BrandEntry) -> bytes:
    return orjson.dumps({"brand": brand_to_obj(e.brand), "owner": e.owner, "updated_at_ms": e.updated_at_ms,
                         "image_pixels": e.image_pixels})


def _decode(raw: bytes) -> BrandEntry:
    obj = orjson.loads(raw)
    return BrandEntry(brand_from_obj(obj["brand"]), obj["owner"], obj["updated_at_ms"], obj.get("image_pixels", 0))
