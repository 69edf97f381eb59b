"""The stand-in for the MPC cluster in the chain tests, and only there: a BIP32 root key held
by the test, signing digests with coincurve and returning (r, s, recovery id).

TEST ONLY: production never sees a private key; the adapters only produce digests and attach
signatures made by the threshold signers. This module is never imported outside tests/.
"""

from __future__ import annotations

import hashlib

import coincurve
from bip32 import BIP32

from chains.keys import Bip32VaultKeys
from node.ports import EcdsaSignature, SigningDigest


class PlainTestSigner:
    def __init__(self, seed_label: str):
        self._root = BIP32.from_seed(hashlib.sha256(seed_label.encode()).digest())

    def vault_keys(self) -> Bip32VaultKeys:
        """The public half only, as production would get it from the group key + chain code."""
        return Bip32VaultKeys(self._root.pubkey, self._root.chaincode)

    def sign_one(self, path, digest: bytes) -> EcdsaSignature:
        priv = coincurve.PrivateKey(self._root.get_privkey_from_path(list(path)))
        sig = priv.sign_recoverable(digest, hasher=None)
        return EcdsaSignature(
            r=int.from_bytes(sig[:32], "big"),
            s=int.from_bytes(sig[32:64], "big"),
            recovery_id=sig[64],
            public_key=priv.public_key.format(compressed=True),
        )

    def sign(self, digests: list[SigningDigest]) -> list[EcdsaSignature]:
        return [self.sign_one(d.path, d.digest) for d in digests]
