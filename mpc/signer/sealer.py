"""The signer's sealing: the engine's `mpc.sealing` (AES-256-GCM, per-blob data keys wrapped by a
KeyProvider; passphrase + argon2id by default), bound to this peer's key id and party name.
Associated data = format version, key id, party, purpose and name (the vault id), so a sealed
file edited, or moved to another vault, party or purpose, does not open."""

from __future__ import annotations

from mpc.sealing import PassphraseKeyProvider, Sealer, SealingError

SealError = SealingError

__all__ = ["Sealer", "SealError", "passphrase_sealer"]


def passphrase_sealer(key_id: str, passphrase: str) -> Sealer:
    return Sealer(PassphraseKeyProvider(passphrase, key_id=key_id))
