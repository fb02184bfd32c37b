"""The secured dev setup without a broker: the development CA's certificates and the principals'
ACLs (the broker test in tests/integration/test_secure_kafka.py enforces them for real)."""
from __future__ import annotations

import ipaddress
import stat

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.dev_certs import DevCA
from connectors.kafka_admin import ROLES, role_acls
from zeroscan.settings import Topics

pytestmark = pytest.mark.unit


def test_dev_ca_issues_loopback_certificates(tmp_path):
    ca = DevCA(tmp_path)
    issued = ca.issue("broker", "zeroscan-broker")
    leaf, root = x509.load_pem_x509_certificates(issued.cert.read_bytes())
    assert root.subject == leaf.issuer and root == x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    root.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                             ipaddress.ip_address("::1")}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in (issued.key, tmp_path / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600  # private keys: the owner only
    # reopened, the same CA signs again
    again = DevCA(tmp_path)
    assert again.cert_path.read_bytes() == ca.cert_path.read_bytes()
    leaf2, _ = x509.load_pem_x509_certificates(again.issue("api", "zeroscan-api").cert.read_bytes())
    root.public_key().verify(leaf2.signature, leaf2.tbs_certificate_bytes, ec.ECDSA(leaf2.signature_hash_algorithm))


def _rights(topics: Topics) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for b in role_acls(topics, "scanner-group", "scanner-txn"):
        if b.restype == ResourceType.TOPIC:
            out.setdefault(b.principal.removeprefix("User:"), set()).add((b.name, b.operation.name))
    return out


def test_roles_rights_on_topics():
    t = Topics.prefixed("p-")
    rights = _rights(t)
    writers = {topic: {who for who, r in rights.items() if (topic, "WRITE") in r} for topic in (
        t.listings, t.brands, t.feedback, t.decisions, t.status, t.dead_letter, t.ledger, t.rescan)}
    assert writers == {
        t.listings: {"cli"},                  # listing updates come from the operator's feeds
        t.brands: {"api", "cli"},             # the registry, through the API or the operator
        t.feedback: {"api", "cli"},           # removals via the API, appeals via the operator
        t.decisions: {"scanner"},             # only the job decides
        t.status: {"scanner"},                # and keeps the latest state per listing and brand
        t.dead_letter: {"scanner"},
        # the job records what feedback did; the registry (through the API or the operator)
        # records who approved, rejected, granted, created accounts: the principals that may
        # write brands already
        t.ledger: {"scanner", "api", "cli"},
        t.rescan: {"scanner"},                # the retro worker runs as the scanner
    }
    assert rights["reader"] == {(t.decisions, "READ"), (t.status, "READ")}
    assert set(rights) == set(ROLES)


def test_only_the_scanner_runs_the_job():
    bindings = role_acls(Topics(), "scanner-group", "scanner-txn")
    txn = [b for b in bindings if b.restype == ResourceType.TRANSACTIONAL_ID]
    assert [(b.principal, b.name, b.resource_pattern_type, b.operation) for b in txn] == [
        ("User:scanner", "scanner-txn", ResourcePatternType.PREFIXED, AclOperation.WRITE)]
    job_group = {(b.principal, b.operation) for b in bindings
                 if b.restype == ResourceType.GROUP and b.name == "scanner-group"}
    assert job_group == {("User:scanner", AclOperation.READ), ("User:cli", AclOperation.DESCRIBE)}
    # readers' throw-away groups are prefixes that cannot cover the job's group
    prefixes = {b.name for b in bindings if b.restype == ResourceType.GROUP
                and b.resource_pattern_type == ResourcePatternType.PREFIXED}
    assert prefixes == {"zeroscan-reader-", "zeroscan-follower-"}
    assert not any("zeroscan-scanner".startswith(p) for p in prefixes)
