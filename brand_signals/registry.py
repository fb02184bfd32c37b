"""The brand registry: the owners' source of truth for brand references, before the `brands`
topic. Every change is validated (the data contract), versioned (a newer version only), owned
(one account per brand id, claimed by the first that registers it) and recorded with who did
it. What an owner account submits is `pending` until an operator approves it: only approved
content is published (through an injected callable) to the `brands` topic, so a pending brand
produces no decision anywhere and the topic keeps the contract's brand schema exactly.
`enforcement: takedown` and self-service removal are privileges the operator grants; without
the takedown grant an approved brand is published with `enforcement: review`.

Stored in SQLite (WAL), so several processes write at once (the API server, the operator's
command line): each change is one write transaction, which serialises writers.

Plain Python: the publisher and the vetting are injected, so the rules here run and are tested
without a broker.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from brand_signals.catalog import StaleVersionError
from brand_signals.contract import ContractError, brand_from_obj, brand_to_obj
from brand_signals.records import Action, BrandReference
from brand_signals.feedback.ledger import action_record
from brand_signals.vetting import concerns as vet_concerns

log = logging.getLogger(__name__)

# The owner recorded for brands an operator registers without naming an account (bulk imports
# from the command line). '@' is outside the account-name alphabet, so no account can be it.
ADMIN_OWNER = "@admin"
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

# Pixels (from the image headers) of one brand's logos and product images together. A worker
# decodes every brand image when it builds its indexes (then keeps what it needs by sha256):
# 400 MP is 16 product photos of 25 MP, or 100 logos and 100 photos of 2 MP; the 1,000 product
# images of 25 MP the contract's item counts would allow are refused.
MAX_BRAND_IMAGE_PIXELS = 400_000_000
# All live brands together: 20 GP is ~2,000 photos of 10 MP, which a worker decodes once at
# start (JPEG with DCT scaling) and then only when an image changes.
MAX_CATALOG_IMAGE_PIXELS = 20_000_000_000
_DB_FILE = "registry.sqlite3"
# A writer holds the transaction across one publish (the producer's delivery timeout is 30 s),
# so a second writer waits a little longer than that before it gives up.
BUSY_TIMEOUT_S = 40.0
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
    """Another process held the registry's write lock for longer than the busy timeout."""


class NotPendingError(ValueError):
    """An operator decision about a brand that has no pending submission."""


class ChangeKind(enum.Enum):
    REGISTERED = "registered"
    UPDATED = "updated"
    WITHDRAWN = "withdrawn"
    SUBMITTED = "submitted"        # an owner's change, pending the operator's approval
    APPROVED = "approved"
    REJECTED = "rejected"
    GRANTED = "granted"
    REVOKED = "revoked"
    REQUESTED = "requested"


# The ledger action record kind of each registry change.
LEDGER_KIND = {
    ChangeKind.REGISTERED: "brand_registered", ChangeKind.UPDATED: "brand_updated",
    ChangeKind.WITHDRAWN: "brand_withdrawn", ChangeKind.SUBMITTED: "brand_submitted",
    ChangeKind.APPROVED: "brand_approved", ChangeKind.REJECTED: "brand_rejected",
    ChangeKind.GRANTED: "privilege_granted", ChangeKind.REVOKED: "privilege_revoked",
    ChangeKind.REQUESTED: "privilege_requested",
}


class Status(enum.Enum):
    APPROVED = "approved"          # the submission is what the brands topic carries
    PENDING = "pending"            # waiting for the operator; the topic keeps the last approved one
    REJECTED = "rejected"          # the operator refused the submission, with a reason


class Privilege(enum.Enum):
    TAKEDOWN = "takedown"                          # `enforcement: takedown` is honoured
    SELF_SERVICE_REMOVAL = "self_service_removal"  # the owner may remove listings themselves


ALL_PRIVILEGES = frozenset(Privilege)


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
    brand: BrandReference              # the latest submission (what the owner sent)
    owner: str
    updated_at_ms: int
    status: Status = Status.APPROVED
    live: BrandReference | None = None  # what the brands topic carries; None: never approved
    concerns: tuple[str, ...] = ()     # reasons for the operator (vetting)
    grants: frozenset[Privilege] = frozenset()
    requests: frozenset[Privilege] = frozenset()
    note: str = ""                     # the operator's reason for a rejection
    image_pixels: int = 0              # header pixels of its logos and product images, when submitted


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which brand, and when."""

    at_ms: int
    actor: str
    brand_id: str
    action: str
    detail: dict


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


Vet = Callable[[BrandReference, list[tuple[BrandReference, str]]], tuple[str, ...]]


def published_form(brand: BrandReference, grants: frozenset[Privilege]) -> BrandReference:
    """The brand as the topic carries it: `takedown` only with the operator's grant, else `review`."""
    if brand.enforcement is Action.TAKEDOWN and Privilege.TAKEDOWN not in grants:
        return dataclasses.replace(brand, enforcement=Action.REVIEW)
    return brand


class BrandRegistry:
    """Brand references by id, with their owner, status and privileges, in a SQLite file under
    `path` (a folder); any number of processes may open it for writing."""

    def __init__(self, path: Path, publish: Publish | None = None, *, read_only: bool = False,
                 collector: CollectorRegistry | None = None, now_ms: Callable[[], int] = _now_ms,
                 vet: Vet | None = None, image_budget: ImageBudget = ImageBudget(),
                 ledger: Callable[[dict], None] | None = None) -> None:
        """`ledger` receives every action (who, when, what) as a ledger action record, inside the
        change's transaction: a change whose record is not acknowledged is rolled back. Default:
        the publisher's `record` method, if it has one."""
        self.path = Path(path)
        self._ledger = ledger if ledger is not None else getattr(publish, "record", None)
        self.image_budget = image_budget
        self.read_only = read_only
        self.collector = collector if collector is not None else CollectorRegistry()
        self.metrics = RegistryMetrics.create(self.collector)
        self._publish = publish
        self._now_ms = now_ms
        self._vet = vet if vet is not None else vet_concerns
        self._lock = threading.Lock()
        db = self.path / _DB_FILE
        if read_only:
            if not db.exists():
                if (self.path / "CURRENT").exists():
                    raise FileNotFoundError(f"brand registry {self.path} is in the old format; open it for "
                                            f"writing once (any `zeroscan brands` change) to convert it")
                raise FileNotFoundError(f"no brand registry at {self.path} (nothing registered yet)")
            self._db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            fresh = not db.exists()
            self._db = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted change is on disk before the caller hears so
            self._db.execute("CREATE TABLE IF NOT EXISTS brands (brand_id TEXT PRIMARY KEY, entry BLOB NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "at_ms INTEGER, actor TEXT, brand_id TEXT, action TEXT, detail BLOB)")
            if fresh and (self.path / "CURRENT").exists():
                self._import_rocksdict()

    def _import_rocksdict(self) -> None:
        """Convert a registry of the previous format (rocksdict in the same folder) once."""
        from rocksdict import AccessType, Options, Rdict

        old = Rdict(str(self.path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            rows = [(k[len(b"brand:"):].decode(), v) for k, v in old.items(from_key=b"brand:")
                    if k.startswith(b"brand:")]
        finally:
            old.close()
        with self._write():
            for brand_id, raw in rows:
                self._db.execute("INSERT OR REPLACE INTO brands VALUES (?, ?)", (brand_id, _encode(_decode(raw))))
        log.info("converted %d brands of %s to %s", len(rows), self.path, _DB_FILE)

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
        with self._lock:
            row = self._db.execute("SELECT entry FROM brands WHERE brand_id = ?", (brand_id,)).fetchone()
        return None if row is None else _decode(row[0])

    def entries(self, *, owner: str | None = None, include_withdrawn: bool = False) -> Iterator[BrandEntry]:
        """Entries in brand_id order, optionally only one owner's, tombstones only when asked."""
        with self._lock:
            rows = self._db.execute("SELECT entry FROM brands ORDER BY brand_id").fetchall()
        for (raw,) in rows:
            e = _decode(raw)
            if (owner is None or e.owner == owner) and (include_withdrawn or not e.brand.deleted):
                yield e

    def pending(self) -> list[BrandEntry]:
        """Submissions waiting for the operator, with the reasons to look at."""
        return [e for e in self.entries() if e.status is Status.PENDING]

    def images_of(self, owner: str) -> set[str]:
        """sha256 of every logo and product image in the owner's brands (submitted or live)."""
        out: set[str] = set()
        for e in self.entries(owner=owner, include_withdrawn=True):
            for b in (e.brand, e.live):
                if b is not None:
                    out.update(i.sha256 for i in b.logos + b.product_images if i.sha256)
        return out

    def audit(self, brand_id: str | None = None) -> list[AuditRecord]:
        with self._lock:
            if brand_id is None:
                rows = self._db.execute("SELECT at_ms, actor, brand_id, action, detail FROM audit ORDER BY seq")
            else:
                rows = self._db.execute("SELECT at_ms, actor, brand_id, action, detail FROM audit "
                                        "WHERE brand_id = ? ORDER BY seq", (brand_id,))
            return [AuditRecord(t, a, b, act, orjson.loads(d)) for t, a, b, act, d in rows.fetchall()]

    # -- changes -----------------------------------------------------------------------------

    def check_put(self, brand: BrandReference, actor: Actor, image_pixels: int | None = None) -> None:
        """Raise as `put` would for ownership, version and (given the pixels) the image budget,
        without changing anything (lets a caller refuse before it does costly work such as
        storing images)."""
        current = self.get(brand.brand_id)
        self._check(brand, actor, current)
        if image_pixels is not None and not brand.deleted:
            self._check_budget(brand.brand_id, image_pixels, current)

    def catalog_image_pixels(self, entries: Iterable[BrandEntry] | None = None) -> int:
        """Header pixels of all brands' images (live or waiting for review), as recorded when each
        was submitted; summed afresh, since other processes write the registry too. Inside a
        write transaction pass its entries (the thread lock is held)."""
        return sum(e.image_pixels for e in (self.entries() if entries is None else entries)
                   if e.status is not Status.REJECTED and not e.brand.deleted)

    def _check_budget(self, brand_id: str, pixels: int, current: BrandEntry | None,
                      entries: Iterable[BrandEntry] | None = None) -> None:
        budget = self.image_budget
        if pixels > budget.per_brand:
            self.metrics.refused.labels("image_budget").inc()
            raise ImageBudgetError(f"brand {brand_id}: its logos and product images have {pixels} pixels in all, "
                                   f"above the per-brand limit of {budget.per_brand}; send fewer or smaller images")
        others = self.catalog_image_pixels(entries) - (current.image_pixels if current and not current.brand.deleted else 0)
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
        """Register, update or (with `deleted`) withdraw a brand. The operator's changes and any
        withdrawal are published at once; an owner's registration or update waits, pending.
        `image_pixels`: the header pixels of its logos and product images, checked against
        the image budget (callers that store images give it; ImageBudgetError if over)."""
        vetted: tuple[str, ...] = ()
        if not actor.is_admin and not brand.deleted:  # before the write lock: the first call loads word lists
            vetted = self._vet(brand, [(e.brand, e.owner) for e in self.entries()
                                       if e.brand.brand_id != brand.brand_id and e.status is not Status.REJECTED])
        with self._write():
            current = self._get_locked(brand.brand_id)
            self._check(brand, actor, current)
            pixels = 0 if brand.deleted or image_pixels is None else image_pixels
            if not brand.deleted and image_pixels is not None:
                self._check_budget(brand.brand_id, pixels, current, self._all_locked())
            if _claimable(current, actor):
                current = None
            owner = current.owner if current is not None else actor.name
            now = self._now_ms()
            grants = current.grants if current is not None else frozenset()
            requests = current.requests if current is not None else frozenset()
            if brand.deleted:
                kind = ChangeKind.WITHDRAWN
                live = current.live if current is not None else None
                if live is not None and not live.deleted:
                    self._send(brand)
                    live = brand
                entry = BrandEntry(brand, owner, now, Status.APPROVED, live, (), grants, requests)
            elif actor.is_admin:
                kind = ChangeKind.REGISTERED if current is None or current.brand.deleted else ChangeKind.UPDATED
                grants = (grants if current is not None else ALL_PRIVILEGES) | (
                    {Privilege.TAKEDOWN} if brand.enforcement is Action.TAKEDOWN else frozenset())
                self._send(brand)
                entry = BrandEntry(brand, owner, now, Status.APPROVED, brand, (), frozenset(grants), requests)
            else:
                kind = ChangeKind.SUBMITTED
                if brand.enforcement is Action.TAKEDOWN and Privilege.TAKEDOWN not in grants:
                    requests = requests | {Privilege.TAKEDOWN}
                entry = BrandEntry(brand, owner, now, Status.PENDING, current.live if current else None,
                                   vetted, grants, requests)
            entry = dataclasses.replace(entry, image_pixels=pixels)
            self._store(entry)
            self._record(actor, brand.brand_id, kind, {"version": brand.version, **(
                {"concerns": list(entry.concerns)} if entry.concerns else {})})
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

    def approve(self, brand_id: str, actor: Actor, grant: Iterable[Privilege] = ()) -> Change:
        """The operator approves a pending submission (granting privileges on the way): it is
        published, with `takedown` only if granted."""
        _need_admin(actor, "approve brands")
        with self._write():
            e = self._pending_locked(brand_id)
            grants = e.grants | frozenset(grant)
            live = published_form(e.brand, grants)
            self._send(live)
            entry = dataclasses.replace(e, updated_at_ms=self._now_ms(), status=Status.APPROVED, live=live,
                                        grants=grants, requests=e.requests - grants, note="")
            self._store(entry)
            self._record(actor, brand_id, ChangeKind.APPROVED, {
                "version": e.brand.version, "grants": sorted(p.value for p in grants),
                "enforcement": live.enforcement.value, "concerns": list(e.concerns)})
            return Change(ChangeKind.APPROVED, entry)

    def reject(self, brand_id: str, actor: Actor, reason: str) -> Change:
        """The operator refuses a pending submission; the last approved version (if any) stays
        published. A brand id that was never approved is free to claim again."""
        _need_admin(actor, "reject brands")
        if not reason.strip():
            raise ValueError("a rejection needs a reason (the owner is shown it)")
        with self._write():
            e = self._pending_locked(brand_id)
            entry = dataclasses.replace(e, updated_at_ms=self._now_ms(), status=Status.REJECTED, note=reason)
            self._store(entry)
            self._record(actor, brand_id, ChangeKind.REJECTED, {"version": e.brand.version, "reason": reason})
            return Change(ChangeKind.REJECTED, entry)

    def set_privilege(self, brand_id: str, privilege: Privilege, actor: Actor, granted: bool = True) -> Change:
        """The operator grants or revokes a privilege. A change of what the topic carries (the
        takedown grant of an approved brand) is published as the next version."""
        _need_admin(actor, "grant privileges")
        with self._write():
            e = self._get_locked(brand_id)
            if e is None:
                raise BrandNotFoundError(f"brand {brand_id}: not registered")
            grants = e.grants | {privilege} if granted else e.grants - {privilege}
            entry = dataclasses.replace(e, updated_at_ms=self._now_ms(), grants=frozenset(grants),
                                        requests=e.requests - {privilege} if granted else e.requests)
            if e.status is Status.APPROVED and e.live is not None and not e.live.deleted:
                new_live = published_form(e.brand, entry.grants)
                if new_live.enforcement is not e.live.enforcement:
                    v = max(e.brand.version, e.live.version) + 1
                    new_live = dataclasses.replace(new_live, version=v)
                    self._send(new_live)
                    entry = dataclasses.replace(entry, brand=dataclasses.replace(e.brand, version=v), live=new_live)
            self._store(entry)
            kind = ChangeKind.GRANTED if granted else ChangeKind.REVOKED
            self._record(actor, brand_id, kind, {"privilege": privilege.value})
            return Change(kind, entry)

    def request(self, brand_id: str, privilege: Privilege, actor: Actor) -> Change:
        """An owner asks the operator for a privilege."""
        with self._write():
            e = self._get_locked(brand_id)
            if e is None or e.brand.deleted:
                raise BrandNotFoundError(f"brand {brand_id}: not registered")
            if not actor.is_admin and e.owner != actor.name:
                raise NotOwnerError(f"brand {brand_id}: owned by another account")
            entry = e if privilege in e.grants else dataclasses.replace(e, requests=e.requests | {privilege})
            self._store(entry)
            self._record(actor, brand_id, ChangeKind.REQUESTED, {"privilege": privilege.value})
            return Change(ChangeKind.REQUESTED, entry)

    def republish(self, brand_ids: list[str] | None = None) -> int:
        """Send the approved record of each brand (tombstones too) again, e.g. to refill a topic;
        submissions never approved are not sent."""
        if self._publish is None:
            raise ValueError("republish needs a publisher")
        n = 0
        with self._write():
            if brand_ids:
                entries = []
                for b in brand_ids:
                    e = self._get_locked(b)
                    if e is None:
                        raise BrandNotFoundError(f"brand {b}: not registered")
                    entries.append(e)
            else:
                entries = self._all_locked()
            for e in entries:
                if e.live is not None:
                    self._send(e.live)
                    n += 1
        return n

    # -- internals ---------------------------------------------------------------------------

    class _Tx:
        def __init__(self, reg: "BrandRegistry") -> None:
            self.reg = reg

        def __enter__(self) -> None:
            reg = self.reg
            if reg.read_only:
                raise ValueError(f"brand registry {reg.path} is open read-only")
            reg._lock.acquire()
            try:
                reg._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                reg._lock.release()
                raise RegistryLockedError(f"brand registry {reg.path}: another writer held it for more than "
                                          f"{BUSY_TIMEOUT_S:.0f} s ({e})") from None

        def __exit__(self, exc_type, *_rest) -> None:
            reg = self.reg
            try:
                reg._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                reg._lock.release()

    def _write(self) -> "BrandRegistry._Tx":
        """One write transaction (serialises writers across processes) under the thread lock."""
        return BrandRegistry._Tx(self)

    def _get_locked(self, brand_id: str) -> BrandEntry | None:
        row = self._db.execute("SELECT entry FROM brands WHERE brand_id = ?", (brand_id,)).fetchone()
        return None if row is None else _decode(row[0])

    def _all_locked(self) -> list[BrandEntry]:
        return [_decode(r) for (r,) in self._db.execute("SELECT entry FROM brands ORDER BY brand_id").fetchall()]

    def _pending_locked(self, brand_id: str) -> BrandEntry:
        e = self._get_locked(brand_id)
        if e is None:
            raise BrandNotFoundError(f"brand {brand_id}: not registered")
        if e.status is not Status.PENDING or e.brand.deleted:
            raise NotPendingError(f"brand {brand_id}: nothing pending (status {e.status.value})")
        return e

    def _store(self, entry: BrandEntry) -> None:
        self._db.execute("INSERT OR REPLACE INTO brands VALUES (?, ?)", (entry.brand.brand_id, _encode(entry)))

    def _record(self, actor: Actor, brand_id: str, kind: ChangeKind, detail: dict) -> None:
        at = self._now_ms()
        self._db.execute("INSERT INTO audit (at_ms, actor, brand_id, action, detail) VALUES (?, ?, ?, ?, ?)",
                         (at, actor.name, brand_id, kind.value, orjson.dumps(detail)))
        if self._ledger is not None:
            try:
                self._ledger(action_record(LEDGER_KIND[kind], actor.name, at, brand_id=brand_id, detail=detail))
            except Exception as e:  # the change is rolled back with the transaction
                self.metrics.refused.labels("ledger_failed").inc()
                raise PublishFailedError(f"brand {brand_id}: {kind.value} by {actor.name} was not recorded on the "
                                         f"ledger, registry unchanged: {e}") from e
        self.metrics.changes.labels(kind.value).inc()

    def _check(self, brand: BrandReference, actor: Actor, current: BrandEntry | None) -> None:
        if self.read_only:
            raise ValueError(f"brand registry {self.path} is open read-only")
        if _claimable(current, actor):
            current = None
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


def _claimable(current: BrandEntry | None, actor: Actor) -> bool:
    """A brand id whose only submission was rejected (never approved) is free to claim again."""
    return (current is not None and current.status is Status.REJECTED and current.live is None
            and current.owner != actor.name and not actor.is_admin)


def _need_admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise NotOwnerError(f"only an operator may {what}")


def _encode(e: BrandEntry) -> bytes:
    return orjson.dumps({"brand": brand_to_obj(e.brand), "owner": e.owner, "updated_at_ms": e.updated_at_ms,
                         "status": e.status.value, "live": brand_to_obj(e.live) if e.live is not None else None,
                         "concerns": list(e.concerns), "grants": sorted(p.value for p in e.grants),
                         "requests": sorted(p.value for p in e.requests), "note": e.note,
                         "image_pixels": e.image_pixels})


def _decode(raw: bytes) -> BrandEntry:
    obj = orjson.loads(raw)
    brand = brand_from_obj(obj["brand"])
    if "status" not in obj:  # written before verification existed: as it was, approved and live
        return BrandEntry(brand, obj["owner"], obj["updated_at_ms"], Status.APPROVED, brand, (), ALL_PRIVILEGES,
                          image_pixels=obj.get("image_pixels", 0))
    live = obj.get("live")
    return BrandEntry(brand, obj["owner"], obj["updated_at_ms"], Status(obj["status"]),
                      brand_from_obj(live) if live is not None else None, tuple(obj.get("concerns", ())),
                      frozenset(Privilege(p) for p in obj.get("grants", ())),
                      frozenset(Privilege(p) for p in obj.get("requests", ())), obj.get("note", ""),
                      obj.get("image_pixels", 0))
