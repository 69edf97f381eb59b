"""The node's Ed25519 snapshot key: born random, kept only sealed at rest.

`sealer` is any object with `seal(plaintext, *, party, purpose, name)` and `open(blob, *,
party, purpose, name)` — mpc.sealing.Sealer (AES-256-GCM under a KMS or a passphrase through
argon2id), injected by the composition root so that this module imports no signer code. The
raw key never prints (node.log.Secret) and there is no default key: a node without a sealed
key publishes no snapshot.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PURPOSE = "por-snapshot-key"


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def new_sealed_key(sealer, node_id: str) -> tuple[bytes, str]:
    """A fresh key, sealed: returns (blob to store, public key hex to publish)."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return sealer.seal(raw, party=node_id, purpose=PURPOSE, name="ed25519"), public_hex(key)


def open_sealed_key(blob: bytes, sealer, node_id: str) -> Ed25519PrivateKey:
    """Opens the key; the sealer raises (wrong key, tampered, sealed for another node)."""
    raw = sealer.open(blob, party=node_id, purpose=PURPOSE, name="ed25519")
    if len(raw) != 32:
        raise ValueError("snapshot_key_malformed: an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)
