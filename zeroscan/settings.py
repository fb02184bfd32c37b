"""One typed settings object for every command: where Kafka is, where state and caches live,
and the job's knobs. Read from the environment (`ZEROSCAN_*`); nothing else hard-codes an
address or a path."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
        return cls(
            bootstrap=_env("BOOTSTRAP", "127.0.0.1:9092"),
            state_dir=state,
            cache_dir=Path(_env("CACHE_DIR", str(ROOT / ".cache"))).resolve(),
            flink_conf_dir=Path(_env("FLINK_CONF_DIR", str(ROOT / "flink-conf"))).resolve(),
            consumer_group=_env("GROUP", "zeroscan-scanner"),
            transactional_id_prefix=_env("TXN_PREFIX", "zeroscan-scanner"),
            topics=Topics.prefixed(_env("TOPIC_PREFIX", "")),
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
