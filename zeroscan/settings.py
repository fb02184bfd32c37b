"""One typed settings object for every command: where Kafka is, where state and caches live,
and the job's knobs. Read from the environment (`ZEROSCAN_*`); nothing else hard-codes an
address or a path."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from brand_signals.registry import MAX_BRAND_IMAGE_PIXELS, MAX_CATALOG_IMAGE_PIXELS, ImageBudget

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ZEROSCAN_{name}", default)


@dataclass(frozen=True, slots=True)
class Topics:
    listings: str = "listings"
    brands: str = "brands"
    feedback: str = "feedback"
    decisions: str = "decisions"
    dead_letter: str = "dead-letter"
    # Internal: what the job learned from feedback (accepted/refused removals, appeal outcomes),
    # replayed by every scan operator.
    ledger: str = "feedback-ledger"

    @classmethod
    def prefixed(cls, prefix: str) -> "Topics":
        base = cls()
        return cls(**{f: prefix + getattr(base, f) for f in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap: str
    state_dir: Path
    cache_dir: Path
    flink_conf_dir: Path
    consumer_group: str
    transactional_id_prefix: str
    topics: Topics = field(default_factory=Topics)
    # Egress policy for seller-supplied image uris (connectors/egress.py): CIDRs, addresses or
    # host names exempt from the internal-address rule, and ones always refused.
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()
    # Overrides of the listing fetch budgets (connectors/image_fetch.FetchBudgets fields:
    # total_s, connect_s, read_s, listing_s, batch_s, batch_bytes, threads, per_host, negative_ttl_s,
    # negative_entries); the defaults and where they come from are named constants there.
    fetch_budgets: dict = field(default_factory=dict)
    # pixels of one brand's images and of all live brands' (registry.ImageBudget)
    brand_image_pixels: int = MAX_BRAND_IMAGE_PIXELS
    catalog_image_pixels: int = MAX_CATALOG_IMAGE_PIXELS

    @property
    def image_budget(self) -> ImageBudget:
        return ImageBudget(self.brand_image_pixels, self.catalog_image_pixels)

    @property
    def jar_dir(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def connector_jars(self) -> list[Path]:
        return sorted((self.jar_dir / "flink-connector").glob("*.jar"))

    @classmethod
    def from_env(cls) -> "Settings":
        state = Path(_env("STATE_DIR", str(ROOT / ".state"))).resolve()
        return cls(
            bootstrap=_env("BOOTSTRAP", "127.0.0.1:9092"),
            state_dir=state,
            cache_dir=Path(_env("CACHE_DIR", str(ROOT / ".cache"))).resolve(),
            flink_conf_dir=Path(_env("FLINK_CONF_DIR", str(ROOT / "flink-conf"))).resolve(),
            consumer_group=_env("GROUP", "zeroscan-scanner"),
            transactional_id_prefix=_env("TXN_PREFIX", "zeroscan-scanner"),
            topics=Topics.prefixed(_env("TOPIC_PREFIX", "")),
            egress_allow=_list(_env("EGRESS_ALLOW", "")),
            egress_deny=_list(_env("EGRESS_DENY", "")),
            fetch_budgets=_pairs(_env("FETCH", ""), "ZEROSCAN_FETCH"),
            brand_image_pixels=_int_env("BRAND_IMAGE_PIXELS", MAX_BRAND_IMAGE_PIXELS),
            catalog_image_pixels=_int_env("CATALOG_IMAGE_PIXELS", MAX_CATALOG_IMAGE_PIXELS),
        )


def _list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _pairs(value: str, name: str) -> dict:
    """`key=value;key=value` with numeric values."""
    out = {}
    for item in (x.strip() for x in value.split(";")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        try:
            num = float(raw)
        except ValueError:
            num = None
        if not sep or num is None:
            raise ValueError(f"{name}: expected key=number pairs separated by ';', got {item!r}")
        out[key.strip()] = int(num) if num.is_integer() and key.strip() in ("threads", "per_host", "negative_entries", "batch_bytes") else num
    return out


def _int_env(name: str, default: int) -> int:
    raw = _env(name, str(default)).replace("_", "")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"ZEROSCAN_{name} must be a positive whole number, got {raw[:40]!r}")
    return int(raw)
