"""mTLS material for the signer mesh: one self-signed certificate per peer, pinned by the others.

There is no cluster CA: a CA's key would be one more thing that can mint a peer. Each peer (and
the node) has its own key pair and a self-signed certificate naming it (CN and SAN DNS =
its name). A peer trusts exactly the certificates listed in its config, and after the
handshake maps the presented certificate to a name by its SHA-256 fingerprint — the identity
is the certificate, never a field in a message.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_VALIDITY_DAYS = 3 * 365


@dataclass(frozen=True)
class Identity:
    name: str
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # the key never reaches a log
        return f"Identity({self.name!r})"


def make_identity(name: str) -> Identity:
    """A P-256 key and a self-signed certificate for `name` (peer name or 'node')."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        # Self-signed trust anchor: CA:TRUE with path length 0 so TLS stacks accept it as its own
        # root; it can sign nothing else that a peer would accept (only pinned certs are roots).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return Identity(
        name=name,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def fingerprint(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


class Pins:
    """name -> pinned certificate; maps a presented certificate back to its name."""

    def __init__(self, certs: dict[str, bytes]):
        self.certs = dict(certs)
        self._by_fp = {fingerprint(pem): name for name, pem in certs.items()}
        assert len(self._by_fp) == len(self.certs), "two names pinned to one certificate"

    def roots_pem(self) -> bytes:
        return b"".join(self.certs[n] for n in sorted(self.certs))

    def name_of(self, presented_pem: bytes) -> str | None:
        try:
            return self._by_fp.get(fingerprint(presented_pem))
        except ValueError:
            return None


def server_credentials(me: Identity, pins: Pins) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(me.key_pem, me.cert_pem)], root_certificates=pins.roots_pem(), require_client_auth=True
    )


def channel_credentials(me: Identity, peer_cert_pem: bytes) -> grpc.ChannelCredentials:
    """Trusts only the one certificate pinned for the peer being called."""
    return grpc.ssl_channel_credentials(
        root_certificates=peer_cert_pem, private_key=me.key_pem, certificate_chain=me.cert_pem
    )


def authenticated_name(context: grpc.ServicerContext, pins: Pins) -> str | None:
    """The pinned name of the peer on the other end of this call, or None."""
    auth = context.auth_context()
    certs = auth.get("x509_pem_cert") or []
    if len(certs) != 1:
        return None
    return pins.name_of(certs[0])
