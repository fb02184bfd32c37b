"""Kafka client properties: the file format, secrets kept out of reprs, the translation to the
Java client's names for the Flink Kafka tables, and one place that makes every client."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.kafka_client import flink_table_options, java_properties
from zeroscan.settings import KafkaClientConfig, Settings, parse_properties

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


@pytest.mark.parametrize("text, expected", [
    ("a=1\nb = 2\n", {"a": "1", "b": "2"}),                       # = with or without spaces
    ("a: 1\nb 2\n", {"a": "1", "b": "2"}),                        # : and whitespace separators
    ("# c\n! c\n\n  a=1\n", {"a": "1"}),                           # comments, blank and indented lines
    ("a=one \\\n    two\n", {"a": "one two"}),                     # continuation drops the next line's indent
    ("a=x\\\\\n", {"a": "x\\"}),                                   # an escaped backslash does not continue
    ("a=p\\u00e4ss\\=w\\:d\n", {"a": "päss=w:d"}),                # unicode and separator escapes
    ("k\\=ey=v\n", {"k=ey": "v"}),                                 # an escaped separator inside the key
    ("a=1\na=2\n", {"a": "2"}),                                    # the last one wins, as in Java
    ("sasl.password=a=b#c\n", {"sasl.password": "a=b#c"}),         # only the first separator splits
])
def test_properties_format(text, expected):
    assert parse_properties(text) == expected


def secure_file(tmp_path: Path, extra: str = "") -> Path:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    f = tmp_path / "client.properties"
    f.write_text("bootstrap.servers=127.0.0.1:9093\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                 f"sasl.username=scanner\nsasl.password=s3cr\"et\\\\x\nssl.ca.location={ca}\n{extra}")
    return f


def test_file_loads_and_secrets_stay_out_of_reprs(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSCAN_KAFKA_CONFIG", str(secure_file(tmp_path)))
    monkeypatch.delenv("ZEROSCAN_BOOTSTRAP", raising=False)
    s = Settings.from_env()
    assert s.bootstrap == "127.0.0.1:9093"  # from the file when the environment names none
    assert s.kafka.get("sasl.password") == 's3cr"et\\x'
    assert s.kafka.secured
    for text in (repr(s), str(s), repr(s.kafka), str(s.kafka), f"{s.kafka}", repr({"feed": s.kafka})):
        assert "s3cr" not in text
    assert "sasl.username=scanner" in repr(s.kafka) and "sasl.password=***" in repr(s.kafka)
    conf = s.kafka.conf(**{"group.id": "g"})
    assert conf["bootstrap.servers"] == "127.0.0.1:9093" and conf["sasl.password"] == 's3cr"et\\x'
    assert conf["group.id"] == "g"

    monkeypatch.setenv("ZEROSCAN_BOOTSTRAP", "127.0.0.1:19093")
    assert Settings.from_env().bootstrap == "127.0.0.1:19093"  # the environment wins


@pytest.mark.parametrize("extra, message", [
    ("group.id=mine\n", "group.id cannot be set here"),                # zeroscan sets it per client
    ("isolation.level=read_uncommitted\n", "isolation.level cannot"),  # readers stay read_committed
])
def test_file_refuses_what_zeroscan_sets_per_client(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        KafkaClientConfig.load(secure_file(tmp_path, extra))


def test_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSCAN_KAFKA_CONFIG", str(tmp_path / "nope.properties"))
    with pytest.raises(ValueError, match="nope.properties: cannot read"):
        Settings.from_env()


def test_plaintext_without_a_file(monkeypatch):
    monkeypatch.delenv("ZEROSCAN_KAFKA_CONFIG", raising=False)
    monkeypatch.setenv("ZEROSCAN_BOOTSTRAP", "127.0.0.1:9092")
    s = Settings.from_env()
    assert s.kafka == KafkaClientConfig("127.0.0.1:9092") and not s.kafka.secured
    assert java_properties(s.kafka) == {"security.protocol": "PLAINTEXT"}


def test_java_names_for_sasl_ssl(tmp_path):
    cfg = KafkaClientConfig.load(secure_file(tmp_path, "client.id=zs\nsocket.keepalive.enable=true\n"))
    j = java_properties(cfg)
    assert j == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        # quotes and backslashes in the password escaped for the JAAS parser
        "sasl.jaas.config": f'{SCRAM} required username="scanner" password="s3cr\\"et\\\\x";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str((tmp_path / "ca.pem").resolve()),
        "client.id": "zs",
        # socket.keepalive.enable is librdkafka-only: left out
    }
    flink = flink_table_options(cfg)
    assert set(flink) == {f"properties.{k}" for k in j}
    assert flink["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    # the connector's fat jar shades kafka-clients: its login module has the shaded name
    assert flink["properties.sasl.jaas.config"].startswith(
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required ")


@pytest.mark.parametrize("props, expected", [
    ({"security.protocol": "sasl_plaintext", "sasl.mechanisms": "PLAIN", "sasl.username": "u", "sasl.password": "p"},
     {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
      "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";'}),
    # lower case and librdkafka's plural alias
    ({"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "none"},
     {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": ""}),  # Java's "off" is empty
    ({"security.protocol": "SSL", "ssl.keystore.location": "/k.p12", "ssl.keystore.password": "pw"},
     {"security.protocol": "SSL", "ssl.keystore.type": "PKCS12", "ssl.keystore.location": "/k.p12",
      "ssl.keystore.password": "pw"}),  # librdkafka's keystore is PKCS#12
    ({"security.protocol": "SSL", "ssl.ca.pem": "PEMDATA"},
     {"security.protocol": "SSL", "ssl.truststore.type": "PEM", "ssl.truststore.certificates": "PEMDATA"}),
])
def test_java_names_table(props, expected):
    assert java_properties(KafkaClientConfig("h:1", tuple(props.items()))) == expected


def test_client_certificate_files_become_a_pem_keystore(tmp_path):
    (tmp_path / "c.pem").write_text("CERT")
    (tmp_path / "k.pem").write_text("KEY")
    cfg = KafkaClientConfig("h:1", (("security.protocol", "SSL"), ("ssl.certificate.location", str(tmp_path / "c.pem")),
                                    ("ssl.key.location", str(tmp_path / "k.pem")), ("ssl.key.password", "kp")))
    assert java_properties(cfg) == {"security.protocol": "SSL", "ssl.keystore.type": "PEM",
                                    "ssl.keystore.certificate.chain": "CERT", "ssl.keystore.key": "KEY",
                                    "ssl.key.password": "kp"}


@pytest.mark.parametrize("props, message", [
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u"},
     "needs sasl.username and sasl.password"),
    ({"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"},
     "no Java client equivalent"),  # a weakened TLS check must not vanish silently
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "only SCRAM-SHA-256"),
    ({"security.protocol": "TLS"}, "expected PLAINTEXT, SSL"),
    ({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"}, "not a file"),
    ({"security.protocol": "SSL", "ssl.certificate.location": "/nonexistent/c.pem"}, "cannot read a PEM file"),
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "a\nb"},
     "line breaks"),  # would end the JAAS line
])
def test_java_translation_refuses(props, message):
    with pytest.raises(ValueError, match=message):
        java_properties(KafkaClientConfig("h:1", tuple(props.items())))


def test_every_confluent_kafka_client_is_made_in_one_place():
    """Clients built anywhere else would miss the shared security properties."""
    made = re.compile(r"\b(Consumer|Producer|AdminClient)\(")
    offenders = []
    for folder in ("connectors", "zeroscan", "pipelines", "brand_signals", "benchmarks", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "kafka_client.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if made.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
            if re.search(r"\w\(\s*settings\.bootstrap\b(?!\.)", path.read_text()):  # passed as a client's target
                offenders.append(f"{path.relative_to(ROOT)}: passes settings.bootstrap instead of settings.kafka")
    assert offenders == []
