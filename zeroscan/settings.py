"""One typed settings object for every command: where Kafka is, where state and caches live,
and the job's knobs. Read from the environment (`ZEROSCAN_*`); nothing else hard-codes an
address or a path."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from brand_signals.registry import MAX_BRAND_IMAGE_PIXELS, MAX_CATALOG_IMAGE_PIXELS, ImageBudget

ROOT = Path(__file__).resolve().parent.parent
# The development broker's address (`zeroscan kafka up`).
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ZEROSCAN_{name}", default)


# Property names whose values are secrets: never printed, logged or written by the project.
_SECRET_KEY = re.compile(r"password|secret|jaas|token|credential|\.key\.pem$|keystore\.key$")
# Set by zeroscan per client (read_committed readers, idempotent writers, throw-away groups):
# a client properties file may not change them.
CLIENT_OWNED_KEYS = frozenset({"group.id", "isolation.level", "enable.idempotence", "transactional.id",
                               "enable.auto.commit", "auto.offset.reset", "enable.partition.eof"})


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name))


@dataclass(frozen=True, slots=True)
class KafkaClientConfig:
    """Where Kafka is and how to reach it: the bootstrap servers plus client properties in
    librdkafka's names (`security.protocol`, `sasl.*`, `ssl.*`), shared by every Kafka client of
    the project (the Flink Kafka tables get them translated, see connectors.kafka_client). The
    repr hides secret values."""

    bootstrap: str
    properties: tuple[tuple[str, str], ...] = ()

    def conf(self, **client: object) -> dict[str, object]:
        """A confluent-kafka configuration: bootstrap, the shared properties, then the client's own."""
        return {"bootstrap.servers": self.bootstrap, **dict(self.properties), **client}

    def get(self, name: str, default: str | None = None) -> str | None:
        return dict(self.properties).get(name, default)

    @property
    def secured(self) -> bool:
        return self.get("security.protocol", "PLAINTEXT").upper() != "PLAINTEXT"

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={'***' if is_secret_key(k) else v}" for k, v in self.properties)
        return f"KafkaClientConfig(bootstrap={self.bootstrap!r}, properties=[{shown}])"

    __str__ = __repr__

    @classmethod
    def load(cls, path: Path, bootstrap: str | None = None) -> "KafkaClientConfig":
        """From a client properties file in Kafka's own format; its `bootstrap.servers` is used
        when no `bootstrap` is given."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"Kafka client properties {path}: cannot read: {e.strerror}") from None
        props = parse_properties(text, str(path))
        file_bootstrap = props.pop("bootstrap.servers", None)
        owned = sorted(CLIENT_OWNED_KEYS & props.keys())
        if owned:
            raise ValueError(f"Kafka client properties {path}: {', '.join(owned)} cannot be set here "
                             "(zeroscan sets them per client)")
        target = bootstrap or file_bootstrap
        if not target:
            raise ValueError(f"Kafka client properties {path}: no bootstrap.servers and ZEROSCAN_BOOTSTRAP unset")
        return cls(target, tuple(props.items()))


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """Java `.properties` text: `key=value`, `key: value` or `key value` lines, `#`/`!` comments,
    a trailing backslash continues a line, backslash escapes as in java.util.Properties."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in "#!":
            continue
        start = i
        while _continues(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        if _continues(line):
            line = line[:-1]
        m = re.match(r"((?:[^\\=:\s]|\\.)+)\s*[=:\s]?\s*(.*)$", line, re.S)
        if m is None:
            raise ValueError(f"{source}:{start}: not a property line")
        key, value = _unescape(m.group(1)), _unescape(m.group(2))
        out[key] = value
    return out


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(s: str) -> str:
    def one(m: re.Match) -> str:
        c = m.group(1)
        if len(c) == 5:  # \uXXXX
            return chr(int(c[1:], 16))
        return _ESCAPES.get(c, c)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, s)


@dataclass(frozen=True, slots=True)
class Topics:
    listings: str = "listings"
    brands: str = "brands"
    feedback: str = "feedback"
    decisions: str = "decisions"
    # Compacted: the latest decision per listing and brand (a `clear` included).
    status: str = "listing-status"
    dead_letter: str = "dead-letter"
    # Internal: what the job learned from feedback (accepted/refused removals, appeal outcomes),
    # replayed by every scan operator.
    ledger: str = "feedback-ledger"
    # Internal: re-check requests of live listings after a brand change (the retro worker
    # writes them, the job reads them beside listings; connectors/retro_worker.py).
    rescan: str = "rescans"

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
    # Client properties of every Kafka client (ZEROSCAN_KAFKA_CONFIG names the file); secrets,
    # so kept out of the repr. `kafka` pairs them with `bootstrap`.
    kafka_properties: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def kafka(self) -> KafkaClientConfig:
        return KafkaClientConfig(self.bootstrap, self.kafka_properties)
    # Checkpoint and savepoint storage as URIs (file://, s3://, hdfs://). None: the embedded job
    # uses folders under state_dir; a job submitted to a cluster leaves them to the cluster's
    # configuration.
    checkpoint_dir: str | None = None
    savepoint_dir: str | None = None
    # The dev session cluster (`zeroscan cluster up`): REST (web UI) and JobManager RPC ports.
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123

    @property
    def jar_dir(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def connector_jars(self) -> list[Path]:
        return sorted((self.jar_dir / "flink-connector").glob("*.jar"))

    @classmethod
    def from_env(cls) -> "Settings":
        state = Path(_env("STATE_DIR", str(ROOT / ".state"))).resolve()
        bootstrap = os.environ.get("ZEROSCAN_BOOTSTRAP")
        kafka = KafkaClientConfig(bootstrap or DEFAULT_BOOTSTRAP)
        if os.environ.get("ZEROSCAN_KAFKA_CONFIG"):
            kafka = KafkaClientConfig.load(Path(os.environ["ZEROSCAN_KAFKA_CONFIG"]), bootstrap)
        return cls(
            bootstrap=kafka.bootstrap,
            kafka_properties=kafka.properties,
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
            checkpoint_dir=storage_uri(os.environ.get("ZEROSCAN_CHECKPOINT_DIR")),
            savepoint_dir=storage_uri(os.environ.get("ZEROSCAN_SAVEPOINT_DIR")),
            flink_rest_port=int(_env("FLINK_REST_PORT", "8081")),
            flink_rpc_port=int(_env("FLINK_RPC_PORT", "6123")),
        )

    @property
    def checkpoint_uri(self) -> str:
        """Where the embedded job keeps checkpoints."""
        return self.checkpoint_dir or (self.state_dir / "checkpoints").as_uri()

    @property
    def savepoint_uri(self) -> str:
        return self.savepoint_dir or (self.state_dir / "savepoints").as_uri()


def storage_uri(value: str | None) -> str | None:
    """A checkpoint/savepoint location as Flink takes it: a URI with a scheme is kept as given
    (s3://bucket/x, hdfs://nn:8020/x, file:///shared/x); a plain path becomes an absolute file://
    URI. An empty value means unset."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if sep:
        if not scheme or not all(c.isalnum() or c in "+-." for c in scheme) or not scheme[0].isalpha():
            raise ValueError(f"storage location {value!r}: bad URI scheme {scheme!r}")
        if not rest.strip("/"):
            raise ValueError(f"storage location {value!r}: no bucket, host or path after {scheme}://")
        return value
    return Path(value).expanduser().resolve().as_uri()


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
