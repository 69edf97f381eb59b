"""Public key material of a vault: the group public key and the chain code agreed at key
generation. Children are derived by non-hardened (public) BIP32 derivation, so no secret is
ever needed here; signing for a child key is the MPC cluster's business (tss-lib's delta)."""

from __future__ import annotations

import functools

from bip32 import BIP32

from node.ports import Path

HARDENED = 0x80000000


class InvalidPath(ValueError):
    pass


def check_path(path: Path) -> Path:
    path = tuple(path)
    for index in path:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < HARDENED:
            raise InvalidPath(f"path_must_be_non_hardened: {path!r}")
    return path


class Bip32VaultKeys:
    """Implements node.ports.VaultKeys from a group public key (33 bytes) and chain code."""

    def __init__(self, public_key: bytes, chain_code: bytes):
        if len(public_key) != 33 or public_key[0] not in (2, 3):
            raise ValueError("group public key must be 33-byte compressed secp256k1")
        if len(chain_code) != 32:
            raise ValueError("chain code must be 32 bytes")
        self._bip32 = BIP32(chaincode=chain_code, pubkey=public_key)
        self.public_key = public_key

    @classmethod
    def from_xpub(cls, xpub: str) -> "Bip32VaultKeys":
        node = BIP32.from_xpub(xpub)
        return cls(node.pubkey, node.chaincode)

    @functools.lru_cache(maxsize=4096)
    def child_public_key(self, path: Path) -> bytes:
        path = check_path(path)
        if not path:
            return self.public_key
        return self._bip32.get_pubkey_from_path(list(path))
