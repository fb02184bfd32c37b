"""Every Kafka client of the project is made here, from one `KafkaClientConfig` (the bootstrap
plus the shared client properties, see `zeroscan.settings`): confluent-kafka consumers,
producers and admin clients, and the same properties translated to the Java client's names for
the Flink Kafka tables (`java_properties`, `flink_table_options`)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from connectors.kafka_config import KafkaClientConfig

# librdkafka's own log lines (e.g. "coordinator load in progress: retrying" while a fresh broker
# settles) go through Python logging instead of straight to stderr.
RDKAFKA_LOG = logging.getLogger("librdkafka")
log = logging.getLogger(__name__)

# A bare bootstrap address stands for a plaintext broker with no client properties (tests,
# tools); the commands always pass `Settings.kafka`.
KafkaTarget = KafkaClientConfig | str


def kafka_config(kafka: KafkaTarget) -> KafkaClientConfig:
    if isinstance(kafka, KafkaClientConfig):
        return kafka
    if isinstance(kafka, str):
        return KafkaClientConfig(kafka)
    raise TypeError(f"expected a KafkaClientConfig or a bootstrap address, got {type(kafka).__name__}")


def consumer(kafka: KafkaTarget, conf: dict[str, Any]) -> Consumer:
    return Consumer(kafka_config(kafka).conf(**conf), logger=RDKAFKA_LOG)


def producer(kafka: KafkaTarget, conf: dict[str, Any] | None = None) -> Producer:
    return Producer(kafka_config(kafka).conf(**(conf or {})), logger=RDKAFKA_LOG)


def admin(kafka: KafkaTarget) -> AdminClient:
    return AdminClient(kafka_config(kafka).conf(), logger=RDKAFKA_LOG)


# --- librdkafka names -> Java client names --------------------------------------------------

# Kafka's own login modules for the SASL mechanisms that take a username and password
# (relative to the kafka-clients package).
LOGIN_MODULES = {
    "SCRAM-SHA-256": "common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "common.security.scram.ScramLoginModule",
    "PLAIN": "common.security.plain.PlainLoginModule",
}
KAFKA_PACKAGE = "org.apache.kafka"
# flink-sql-connector-kafka (the fat jar the job loads) shades kafka-clients under this package,
# so its JAAS login line must name the shaded login module.
FLINK_SQL_KAFKA_PACKAGE = "org.apache.flink.kafka.shaded.org.apache.kafka"
# Same name and meaning in librdkafka and in the Java client.
_SAME_NAME = frozenset({"client.id", "sasl.kerberos.service.name", "ssl.key.password"})
# Handled below, together with their partners.
_TRANSLATED = frozenset({
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.ca.pem", "ssl.certificate.location", "ssl.key.location",
    "ssl.certificate.pem", "ssl.key.pem", "ssl.keystore.location", "ssl.keystore.password",
    "ssl.endpoint.identification.algorithm",
})


_SECURITY_NAME = re.compile(r"ssl|sasl|oauth|kerberos|security")


def java_properties(kafka: KafkaClientConfig, kafka_package: str = KAFKA_PACKAGE) -> dict[str, str]:
    """The shared client properties in the Java client's names: a SASL username and password
    become a JAAS login line, PEM files become PEM trust and key stores. Security settings
    without a known Java equivalent are refused (they must not be dropped silently); other
    librdkafka-only tuning is left out."""
    p = dict(kafka.properties)
    out: dict[str, str] = {}
    unknown_security = sorted(k for k in p if _SECURITY_NAME.search(k) and k not in _TRANSLATED | _SAME_NAME)
    if unknown_security:
        raise ValueError(f"Kafka client properties {', '.join(unknown_security)}: no Java client equivalent "
                         "known, so the Flink Kafka tables could not use them")
    skipped = sorted(k for k in p if k not in _TRANSLATED | _SAME_NAME)
    if skipped:
        log.info("Kafka client properties not passed to Java clients (librdkafka only): %s", ", ".join(skipped))
    for k in _SAME_NAME & p.keys():
        out[k] = p[k]
    protocol = p.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"security.protocol {p['security.protocol']!r}: expected PLAINTEXT, SSL, "
                         "SASL_PLAINTEXT or SASL_SSL")
    out["security.protocol"] = protocol
    if protocol.startswith("SASL_"):
        mechanism = (p.get("sasl.mechanism") or p.get("sasl.mechanisms") or "GSSAPI").upper()
        out["sasl.mechanism"] = mechanism
        if mechanism in LOGIN_MODULES:
            user, password = p.get("sasl.username"), p.get("sasl.password")
            if not user or password is None:
                raise ValueError(f"sasl.mechanism {mechanism} needs sasl.username and sasl.password")
            out["sasl.jaas.config"] = (f'{kafka_package}.{LOGIN_MODULES[mechanism]} required '
                                       f'username="{_jaas_quote(user)}" '
                                       f'password="{_jaas_quote(password)}";')
        elif mechanism != "GSSAPI":
            raise ValueError(f"sasl.mechanism {mechanism}: only {', '.join(LOGIN_MODULES)} and GSSAPI "
                             "are translated for Java clients")
    if protocol.endswith("SSL"):
        out.update(_java_tls(p))
    return out


def flink_table_options(kafka: KafkaClientConfig) -> dict[str, str]:
    """The Flink Kafka connector's `properties.*` table options for these client properties."""
    return {f"properties.{k}": v for k, v in java_properties(kafka, FLINK_SQL_KAFKA_PACKAGE).items()}


def _java_tls(p: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if "ssl.ca.location" in p:
        ca = Path(p["ssl.ca.location"])
        if not ca.is_file():
            raise ValueError(f"ssl.ca.location {ca}: not a file (Java clients need one PEM file of CA "
                             "certificates)")
        out.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca.resolve())})
    elif "ssl.ca.pem" in p:
        out.update({"ssl.truststore.type": "PEM", "ssl.truststore.certificates": p["ssl.ca.pem"]})
    chain = p.get("ssl.certificate.pem") or _read_pem(p, "ssl.certificate.location")
    key = p.get("ssl.key.pem") or _read_pem(p, "ssl.key.location")
    if (chain is None) != (key is None):
        raise ValueError("a client certificate needs both its certificate and its private key "
                         "(ssl.certificate.location / ssl.key.location)")
    if chain is not None and "ssl.keystore.location" in p:
        raise ValueError("give either ssl.certificate/ssl.key or ssl.keystore.location, not both")
    if chain is not None:
        out.update({"ssl.keystore.type": "PEM", "ssl.keystore.certificate.chain": chain, "ssl.keystore.key": key})
    elif "ssl.keystore.location" in p:  # librdkafka's keystore is always PKCS#12
        out.update({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": p["ssl.keystore.location"]})
        if "ssl.keystore.password" in p:
            out["ssl.keystore.password"] = p["ssl.keystore.password"]
    algo = p.get("ssl.endpoint.identification.algorithm")
    if algo is not None:
        if algo.lower() not in ("https", "none"):
            raise ValueError(f"ssl.endpoint.identification.algorithm {algo!r}: expected https or none")
        out["ssl.endpoint.identification.algorithm"] = "https" if algo.lower() == "https" else ""
    return out


def _read_pem(p: dict[str, str], key: str) -> str | None:
    if key not in p:
        return None
    try:
        return Path(p[key]).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{key} {p[key]}: cannot read a PEM file: {e}") from None


def _jaas_quote(s: str) -> str:
    if any(c in s for c in "\r\n"):
        raise ValueError("SASL username and password may not contain line breaks")
    return s.replace("\\", "\\\\").replace('"', '\\"')
