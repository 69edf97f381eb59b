"""The signer's view of sealing: `seal(plaintext, aad)` / `open(blob, aad)`.

Adapter over the engine's `mpc.sealing` (AEAD with associated data, keys from a KeyProvider;
passphrase + argon2id by default) so that the store does not depend on its exact call shapes.
"""

from __future__ import annotations

import pathlib
from typing import Protocol


class SealError(Exception):
    """A sealed blob does not open: wrong key, tampered, or sealed for other associated data."""


class Sealer(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...


def passphrase_sealer(data_dir: pathlib.Path, key_id: str, passphrase: str) -> Sealer:
    from mpc.signer import _sealing_adapter

    return _sealing_adapter.make(pathlib.Path(data_dir), key_id, passphrase)
