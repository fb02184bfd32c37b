"""One typed settings object for every command: where Kafka is, where state and caches live,
and the job's knobs. Read from the environment (`ZEROSCAN_*`); nothing else hard-codes an
address or a path."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from brand_signals.registry import MAX_BRAND_IMAGE_PIXELS, MAX_CATALOG_IMAGE_PIXELS, ImageBudget
from models.device import check_device
from brand_signals.sources import DEFAULT as DEFAULT_SIGNALS
from brand_signals.sources import parse as parse_signals
from connectors.kafka_config import (  # noqa: F401 (re-exported: the settings' own types)
    CLIENT_OWNED_KEYS,
    KafkaClientConfig,
    Topics,
    is_secret_key,
    parse_properties,
)

ROOT = Path(__file__).resolve().parent.parent
# The development broker's address (`zeroscan kafka up`).
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ZEROSCAN_{name}", default)


# Slots per source subtask of the cache before the keyed step (Settings.unchanged_cache_slots).
DEFAULT_UNCHANGED_CACHE_SLOTS = 1 << 20
# Container allocations between two young collections in the scan worker (CPython: 700); see
# connectors.brand_feed.space_young_collections.
DEFAULT_GC_YOUNG = 50_000
MAX_GC_YOUNG = 10_000_000


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
    # Where the image models run (ZEROSCAN_IMAGE_DEVICE): cpu, or cuda with onnxruntime-gpu
    # installed (models/device.py says how; asking for cuda without it fails at start).
    image_device: str = "cpu"
    # Processes of the retro worker's pre-filter (ZEROSCAN_RETRO_PROCESSES; connectors/retro_worker.py).
    retro_processes: int = 1
    # Unchanged re-posts (a listing update byte-identical to the listing's previous one but for
    # its event_time) stop on the Java side; each listing's unchanged content is still scanned
    # again at least once per this many seconds (new learned signals, image fetches that failed).
    # 0: every update is scanned.
    unchanged_recheck_s: int = 86_400
    # Slots per source subtask of the cache that stops an unchanged re-post where it is read,
    # before the keyed exchange (pipelines/java ChangedHere; 24 bytes each, rounded down to a
    # power of two). 0: only the keyed step stops them.
    unchanged_cache_slots: int = DEFAULT_UNCHANGED_CACHE_SLOTS
    # Price-only re-posts of a listing whose content presents no brand stop on the Java side too
    # (ZEROSCAN_PRICE_LOOP, on or off): the job's scans say which contents present none on the
    # `quiet` topic, which it reads back (pipelines/java RepostStop). Kafka mode only.
    price_loop: bool = True
    # How the scan's records cross into Python: pandas (Arrow batches) or row (one per call,
    # only to measure the crossing: pipelines.operators.ScanRowFunction).
    scan_udf: str = "pandas"
    # How long a stop (SIGTERM, Ctrl-C) of the embedded job waits for its savepoint before it
    # cancels the job instead; the next run then resumes from the last checkpoint, which a
    # cancel keeps (flink-conf: RETAIN_ON_CANCELLATION). 0: stop by cancelling at once.
    stop_timeout_s: int = 60

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
    # The scan: image scanning on/off, OCR of images (on, off, upscale), the signal sources run
    # (brand_signals.sources: built-in names or package.module:Class plug-ins, in order).
    images: bool = True
    image_ocr: str = "on"
    signals: tuple[str, ...] = DEFAULT_SIGNALS
    # Flink: the workers' Python, overrides of flink-conf/config.yaml, the parallelism of a job
    # submitted with `flink run` without --parallelism.
    worker_python: str = sys.executable
    flink_opts: tuple[tuple[str, str], ...] = ()
    parallelism: int = 1
    # An account's API token for the command line (a secret: kept out of the repr).
    token: str | None = field(default=None, repr=False)
    # The scan worker's young-collection threshold of the cyclic collector (ZEROSCAN_GC_YOUNG;
    # it travels to the workers in the job's ScanConfig: connectors.brand_feed.space_young_collections).
    gc_young: int = DEFAULT_GC_YOUNG

    @property
    def jar_dir(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def connector_jars(self) -> list[Path]:
        return sorted((self.jar_dir / "flink-connector").glob("*.jar"))

    @property
    def udf_jar(self) -> Path:
        """The job's Java functions (pipelines/java, built by `make jars`)."""
        return self.jar_dir / "flink-udf" / "zeroscan-flink-udf.jar"

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
            image_device=check_device(_env("IMAGE_DEVICE", "cpu")),
            checkpoint_dir=storage_uri(os.environ.get("ZEROSCAN_CHECKPOINT_DIR")),
            savepoint_dir=storage_uri(os.environ.get("ZEROSCAN_SAVEPOINT_DIR")),
            flink_rest_port=int(_env("FLINK_REST_PORT", "8081")),
            flink_rpc_port=int(_env("FLINK_RPC_PORT", "6123")),
            images=_switch("IMAGES", ("on", "off")) == "on",
            image_ocr=_switch("IMAGE_OCR", ("on", "off", "upscale")),
            signals=parse_signals(_env("SIGNALS", ",".join(DEFAULT_SIGNALS))),
            worker_python=_env("WORKER_PYTHON", sys.executable),
            flink_opts=_flink_opts(_env("FLINK_OPTS", "")),
            parallelism=_int_env("PARALLELISM", 1),
            retro_processes=_int_env("RETRO_PROCESSES", 1),
            unchanged_recheck_s=_int_env("UNCHANGED_RECHECK_S", 86_400, minimum=0),
            unchanged_cache_slots=_int_env("UNCHANGED_CACHE_SLOTS", DEFAULT_UNCHANGED_CACHE_SLOTS, minimum=0,
                                           maximum=MAX_UNCHANGED_CACHE_SLOTS, why_max=" (1.5 GiB per source subtask)"),
            price_loop=_switch("PRICE_LOOP", ("on", "off")) == "on",
            scan_udf=_switch("SCAN_UDF", ("pandas", "row")),
            stop_timeout_s=_int_env("STOP_TIMEOUT_S", 60, minimum=0),
            token=os.environ.get("ZEROSCAN_TOKEN") or None,
            gc_young=_int_env("GC_YOUNG", DEFAULT_GC_YOUNG, maximum=MAX_GC_YOUNG),
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


def _int_env(name: str, default: int, minimum: int = 1, maximum: int | None = None, why_max: str = "") -> int:
    raw = _env(name, str(default)).replace("_", "")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise ValueError(f"ZEROSCAN_{name} must be {what}, got {raw[:40]!r}")
    if maximum is not None and int(raw) > maximum:
        raise ValueError(f"ZEROSCAN_{name} must be at most {maximum}{why_max}, got {int(raw)}")
    return int(raw)


MAX_UNCHANGED_CACHE_SLOTS = 1 << 26


def _switch(name: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, allowed[0]).strip().lower()
    if value not in allowed:
        raise ValueError(f"ZEROSCAN_{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value[:40]!r}")
    return value


def _flink_opts(value: str) -> tuple[tuple[str, str], ...]:
    """`key=value;key=value`: Flink options over flink-conf/config.yaml."""
    out = []
    for item in filter(None, (x.strip() for x in value.split(";"))):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"ZEROSCAN_FLINK_OPTS: expected key=value pairs separated by ';', got {item[:60]!r}")
        out.append((k.strip(), v.strip()))
    return tuple(out)
