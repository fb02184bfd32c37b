"""Certificates for the development setup: a private CA and certificates it signs for the dev
Kafka broker and the brand API, valid for 127.0.0.1, ::1 and localhost. Production brings its
own PKI; these files live under the state folder, private keys readable by the owner only."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for a developer's checkout, short enough that a leaked dev key does not live on.
VALIDITY_DAYS = 365
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    cert: Path   # PEM certificate followed by the CA's (the chain)
    key: Path    # PEM PKCS#8 private key, unencrypted, mode 0600

    def chain_pem(self) -> str:
        return self.cert.read_text(encoding="ascii")

    def key_pem(self) -> str:
        return self.key.read_text(encoding="ascii")


class DevCA:
    """A CA kept in `folder` (ca.pem, ca-key.pem): created on first use, reused afterwards."""

    def __init__(self, folder: Path, now: dt.datetime | None = None):
        self.folder = folder
        self.cert_path = folder / "ca.pem"
        self._key_path = folder / "ca-key.pem"
        self._now = now or dt.datetime.now(dt.timezone.utc)
        if self.cert_path.exists() and self._key_path.exists():
            self._key = serialization.load_pem_private_key(self._key_path.read_bytes(), password=None)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zeroscan development CA")])
        self._cert = (
            self._builder(name, name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256()))
        _write_private(self._key_path, _key_pem(self._key))
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self._now - dt.timedelta(minutes=5))
                .not_valid_after(self._now + dt.timedelta(days=VALIDITY_DAYS)))

    def issue(self, name: str, common_name: str) -> IssuedCert:
        """`name`.pem (certificate + CA) and `name`-key.pem for a loopback TLS server that may
        also act as a TLS client (the broker authenticates to its own controller with it)."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(n) for n in LOOPBACK_NAMES] + [x509.IPAddress(ipaddress.ip_address(a))
                                                             for a in LOOPBACK_IPS]
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), self._cert.subject,
                          key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        out = IssuedCert(self.folder / f"{name}.pem", self.folder / f"{name}-key.pem")
        _write_private(out.key, _key_pem(key))
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                             + self._cert.public_bytes(serialization.Encoding.PEM))
        return out


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """Create the file readable by its owner only before any secret byte is in it."""
    path.unlink(missing_ok=True)
    with open(path, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
        f.write(data)


def write_private_text(path: Path, text: str) -> None:
    _write_private(path, text.encode("utf-8"))
