"""Binds the signer's Sealer to a passphrase: argon2id -> 256-bit key -> AES-256-GCM.

The KDF salt and parameters live in `<data_dir>/kdf.json` (public); the key id and the
caller's associated data are both authenticated.
"""

from __future__ import annotations

import json
import os
import pathlib

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.signer.sealer import SealError

MAGIC = b"CSS1"
KDF_TIME_COST = 3
KDF_MEMORY_KIB = 64 * 1024
KDF_PARALLELISM = 1


class _AesGcmSealer:
    def __init__(self, key: bytes, key_id: str):
        self._aead = AESGCM(key)
        self._key_id = key_id.encode()

    def __repr__(self) -> str:
        return "Sealer(<redacted>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, self._key_id + b"\x00" + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 4 + 12 + 16 or blob[:4] != MAGIC:
            raise SealError("not a sealed blob")
        try:
            return self._aead.decrypt(blob[4:16], blob[16:], self._key_id + b"\x00" + aad)
        except InvalidTag:
            raise SealError("authentication failed") from None


def make(data_dir: pathlib.Path, key_id: str, passphrase: str):
    data_dir.mkdir(parents=True, exist_ok=True)
    kdf = data_dir / "kdf.json"
    if kdf.exists():
        try:
            p = json.loads(kdf.read_text())
            salt = bytes.fromhex(p["salt"])
            t, m, par = int(p["time_cost"]), int(p["memory_kib"]), int(p["parallelism"])
        except (ValueError, KeyError) as exc:
            raise SealError(f"{kdf}: unreadable ({exc})") from None
        if t < KDF_TIME_COST or m < KDF_MEMORY_KIB or len(salt) < 16:
            raise SealError(f"{kdf}: parameters weaker than the minimum")  # no downgrade by editing
    else:
        salt, t, m, par = os.urandom(16), KDF_TIME_COST, KDF_MEMORY_KIB, KDF_PARALLELISM
        kdf.write_text(json.dumps({"kdf": "argon2id", "salt": salt.hex(), "time_cost": t, "memory_kib": m, "parallelism": par}))
    key = hash_secret_raw(passphrase.encode(), salt, time_cost=t, memory_cost=m, parallelism=par, hash_len=32, type=Type.ID)
    return _AesGcmSealer(key, key_id)
