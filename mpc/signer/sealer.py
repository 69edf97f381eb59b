"""The signer's sealing: the engine's `mpc.sealing` (AES-256-GCM, per-blob data keys wrapped by a
KeyProvider; passphrase + argon2id by default), bound to this peer's key id, party name and
environment. Associated data = format version, key id, environment, party, purpose and name
(the vault id), so a sealed file edited, or moved to another vault, party, purpose or
environment, does not open: a share sealed under environment = "production" refuses to load
under a config that says "test"."""

from __future__ import annotations

from mpc.sealing import PassphraseKeyProvider, SealedForAnotherEnvironment, Sealer, SealingError

SealError = SealingError

__all__ = ["Sealer", "SealError", "SealedForAnotherEnvironment", "passphrase_sealer"]


def passphrase_sealer(key_id: str, passphrase: str, environment: str) -> Sealer:
    return Sealer(PassphraseKeyProvider(passphrase, key_id=key_id), environment=environment)
