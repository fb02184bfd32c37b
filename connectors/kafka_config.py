"""Kafka client configuration shared by every Kafka client of the project: the bootstrap
servers plus client properties (a Kafka `.properties` file), and the topic names. Plain values,
made by `zeroscan.settings.Settings` and passed down to the connectors."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
    # Internal, compacted: per listing, what the job's latest scan of it said of its content
    # without the price (it presents no brand, or "-"); the job writes it and reads it back, so
    # that price-only re-posts of such listings stop before the scan (pipelines/java RepostStop;
    # schema: brand_signals/schemas/project/quiet-listings.schema.json).
    quiet: str = "quiet-listings"

    @classmethod
    def prefixed(cls, prefix: str) -> "Topics":
        base = cls()
        return cls(**{f: prefix + getattr(base, f) for f in cls.__slots__})
