"""A throwaway PKI made on the fly with ``cryptography``: a CA, a server certificate for
127.0.0.1/localhost, and client certificates (valid, expired, from another CA)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Authority:
    def __init__(self, name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        dns: tuple[str, ...] = (),
        uris: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
        expired: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if expired:
            start, end = _NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1)
        else:
            start, end = _NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=10)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Pki:
    ca: Authority
    server: Issued
    web: Issued  # SAN URI spiffe://example.test/ns/prod/sa/web
    admin: Issued  # SAN DNS admin.example.test
    stranger: Issued  # valid, from our CA, but its SAN names no caller
    expired_web: Issued  # web's identity, expired
    rogue_web: Issued  # web's identity, signed by another CA

    @classmethod
    def make(cls) -> Pki:
        ca, other = Authority("totpd test CA"), Authority("rogue CA")
        return cls(
            ca=ca,
            server=ca.issue("totpd", dns=("localhost",), ips=("127.0.0.1",), server=True),
            web=ca.issue("web", uris=(WEB_SPIFFE,)),
            admin=ca.issue("admin", dns=(ADMIN_DNS,)),
            stranger=ca.issue("stranger", dns=("stranger.example.test",)),
            expired_web=ca.issue("web", uris=(WEB_SPIFFE,), expired=True),
            rogue_web=other.issue("web", uris=(WEB_SPIFFE,)),
        )


WEB_SPIFFE = "spiffe://example.test/ns/prod/sa/web"
ADMIN_DNS = "admin.example.test"
