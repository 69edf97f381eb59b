"""Sealing secrets at rest (key shares, pre-parameters): AES-256-GCM with associated data.

Envelope encryption, KMS style: each sealed blob has its own random 256-bit data key, wrapped
by a `KeyProvider` (a KMS, an HSM, or here a passphrase through argon2id). The associated data
is the whole header — format version, algorithm, key id, environment, party, purpose, name and
the wrapped data key — so a blob moved to another party, purpose, name or environment, or
edited anywhere, does not open. The environment binding keeps a production share from loading
under a test config (which allows opaque digests).

    sealer = Sealer(PassphraseKeyProvider(passphrase, key_id="signer-1/2026"), environment="production")
    blob = sealer.seal(share.to_bytes(), party="signer-1", purpose="key-share", name=vault_id)
    share = KeyShare.from_bytes(sealer.open(blob, party="signer-1", purpose="key-share", name=vault_id))

Blob layout: b"CNSEAL" | version (1 byte) | header length (4 bytes, big-endian) | header (JSON,
sorted keys) | AES-256-GCM ciphertext+tag. Header: {"v", "alg", "key_id", "environment", "party",
"purpose", "name", "wrapped" (hex), "nonce" (hex)}. Version 1 (sealed before the environment was
bound) has no "environment" field and opens only for environment "production".
"""

from __future__ import annotations

import json
import os
import struct
import threading
from typing import Protocol, runtime_checkable

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node import limits

MAGIC = b"CNSEAL"
VERSION = 2
VERSION_WITHOUT_ENVIRONMENT = 1  # opens only as environment "production"
ALG = "AES-256-GCM"


class SealingError(Exception):
    """A sealed blob could not be opened (or sealed); the message names why."""


class WrongKey(SealingError):
    """wrong_passphrase_or_key: the data key does not unwrap (or its wrapping was altered)."""


class SealedDataTampered(SealingError):
    """sealed_data_tampered: the header or ciphertext was altered, truncated or moved."""


class SealedForAnother(SealingError):
    """sealed_for_another_party_or_purpose: the blob is intact but not the one asked for."""


class SealedForAnotherEnvironment(SealedForAnother):
    """sealed_for_another_environment: sealed under one environment, opened under another."""

    def __init__(self, sealed: str, expected: str):
        super().__init__(f"sealed_for_another_environment: sealed under environment {sealed!r}, this sealer's is {expected!r}")
        self.sealed = sealed
        self.expected = expected


class KdfParametersOutOfRange(SealingError):
    """kdf_parameters_out_of_range: a wrapped key asks for an argon2 cost above node/limits.py's
    MPC_KDF_* (or below argon2's minimum); refused before argon2 runs."""


def kdf_parameters_in_range(time_cost: int, memory_kib: int, parallelism: int) -> bool:
    return (1 <= time_cost <= limits.MPC_KDF_TIME_COST_MAX and 1 <= parallelism <= limits.MPC_KDF_PARALLELISM_MAX
            and 8 * parallelism <= memory_kib <= limits.MPC_KDF_MEMORY_KIB_MAX)


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps per-blob data keys (a KMS's GenerateDataKey / Decrypt)."""

    key_id: str

    def new_data_key(self) -> tuple[bytes, bytes]:
        """(32-byte data key, wrapped data key)."""

    def unwrap_data_key(self, wrapped: bytes) -> bytes:
        """The data key; raises WrongKey."""


class PassphraseKeyProvider:
    """Key-encryption key = argon2id(passphrase, salt). The KDF cost is stored beside the salt
    in each wrapped key, so it can be raised later without breaking old blobs; it is bounded
    (node/limits.py MPC_KDF_*) here and again before each unwrap. Defaults follow RFC 9106's
    second recommendation (t=3, 64 MiB, p=4)."""

    PASSPHRASE_CHARS_MIN = 12
    _WRAP_FMT = ">16sIII12s"  # salt, time_cost, memory_kib, parallelism, nonce; then ct+tag

    def __init__(self, passphrase: str, key_id: str, time_cost: int = limits.MPC_KDF_TIME_COST_DEFAULT,
                 memory_kib: int = limits.MPC_KDF_MEMORY_KIB_DEFAULT, parallelism: int = limits.MPC_KDF_PARALLELISM_DEFAULT):
        if not isinstance(passphrase, str) or len(passphrase) < self.PASSPHRASE_CHARS_MIN:
            raise ValueError(f"passphrase_too_short: at least {self.PASSPHRASE_CHARS_MIN} characters")
        if not key_id:
            raise ValueError("key_id_required")
        if not kdf_parameters_in_range(time_cost, memory_kib, parallelism):
            raise ValueError("argon2_parameters_out_of_range")
        self.key_id = key_id
        self._passphrase = passphrase.encode()
        self._cost = (time_cost, memory_kib, parallelism)
        self._keks: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PassphraseKeyProvider(key_id={self.key_id!r}, passphrase=<redacted>)"

    def _kek(self, salt: bytes, t: int, m: int, p: int) -> bytes:
        k = (salt, t, m, p)
        with self._lock:
            if k in self._keks:
                return self._keks[k]
        kek = hash_secret_raw(self._passphrase, salt, time_cost=t, memory_cost=m, parallelism=p, hash_len=32, type=Type.ID)
        with self._lock:
            if len(self._keks) >= 64:  # a bound on cached derivations
                self._keks.clear()
            self._keks[k] = kek
        return kek

    def _ad(self) -> bytes:
        return b"custody-node/passphrase-kek/v1\x00" + self.key_id.encode()

    def new_data_key(self) -> tuple[bytes, bytes]:
        salt, nonce, data_key = os.urandom(16), os.urandom(12), os.urandom(32)
        t, m, p = self._cost
        ct = AESGCM(self._kek(salt, t, m, p)).encrypt(nonce, data_key, self._ad())
        return data_key, struct.pack(self._WRAP_FMT, salt, t, m, p, nonce) + ct

    def unwrap_data_key(self, wrapped: bytes) -> bytes:
        n = struct.calcsize(self._WRAP_FMT)
        if len(wrapped) != n + 48:
            raise WrongKey("wrong_passphrase_or_key: wrapped data key has the wrong length")
        salt, t, m, p, nonce = struct.unpack_from(self._WRAP_FMT, wrapped)
        if not kdf_parameters_in_range(t, m, p):
            raise KdfParametersOutOfRange(
                f"kdf_parameters_out_of_range: time_cost={t} memory_kib={m} parallelism={p}; at most "
                f"{limits.MPC_KDF_TIME_COST_MAX}/{limits.MPC_KDF_MEMORY_KIB_MAX}/{limits.MPC_KDF_PARALLELISM_MAX}"
            )
        try:
            return AESGCM(self._kek(salt, t, m, p)).decrypt(nonce, wrapped[n:], self._ad())
        except InvalidTag:
            raise WrongKey("wrong_passphrase_or_key: the data key does not unwrap under this passphrase and key id") from None


class Sealer:
    """Seals under `environment` ("production", "test"): a blob opens only for a sealer of the
    same environment; a version 1 blob (sealed before the binding) only for "production"."""

    def __init__(self, provider: KeyProvider, environment: str):
        assert isinstance(provider, KeyProvider)
        if not isinstance(environment, str) or not environment:
            raise ValueError("environment_required")
        self._provider = provider
        self.environment = environment

    def __repr__(self) -> str:
        return f"Sealer({self._provider!r}, environment={self.environment!r})"

    @staticmethod
    def _prefix(header: bytes) -> bytes:
        return MAGIC + bytes([VERSION]) + struct.pack(">I", len(header)) + header

    def seal(self, plaintext: bytes, *, party: str, purpose: str, name: str = "") -> bytes:
        if len(plaintext) > limits.MPC_SEALED_BYTES_MAX:
            raise SealingError("plaintext_too_large")
        data_key, wrapped = self._provider.new_data_key()
        nonce = os.urandom(12)
        header = json.dumps({
            "v": VERSION, "alg": ALG, "key_id": self._provider.key_id, "environment": self.environment,
            "party": party, "purpose": purpose, "name": name, "wrapped": wrapped.hex(), "nonce": nonce.hex(),
        }, sort_keys=True, separators=(",", ":")).encode()
        prefix = self._prefix(header)
        return prefix + AESGCM(data_key).encrypt(nonce, plaintext, prefix)

    def open(self, blob: bytes, *, party: str, purpose: str, name: str = "") -> bytes:
        if not isinstance(blob, bytes) or len(blob) > limits.MPC_SEALED_BYTES_MAX + 4096:
            raise SealedDataTampered("sealed_data_tampered: not bytes, or too large")
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 5:
            raise SealedDataTampered("sealed_data_tampered: not a sealed blob (bad magic or truncated)")
        version = blob[len(MAGIC)]
        if version not in (VERSION, VERSION_WITHOUT_ENVIRONMENT):
            raise SealingError(f"unsupported_sealed_format_version: {version}")
        (hlen,) = struct.unpack_from(">I", blob, len(MAGIC) + 1)
        start = len(MAGIC) + 5
        if start + hlen + 16 > len(blob):
            raise SealedDataTampered("sealed_data_tampered: truncated")
        header_bytes = blob[start : start + hlen]
        try:
            h = json.loads(header_bytes)
            wrapped, nonce = bytes.fromhex(h["wrapped"]), bytes.fromhex(h["nonce"])
            fields = (h["v"], h["alg"], h["key_id"], h["party"], h["purpose"], h["name"])
            environment = h["environment"] if version == VERSION else "production"
        except (ValueError, KeyError, TypeError):
            raise SealedDataTampered("sealed_data_tampered: header does not parse") from None
        if fields[0] != version or fields[1] != ALG or len(nonce) != 12:
            raise SealedDataTampered("sealed_data_tampered: header fields")
        if version == VERSION_WITHOUT_ENVIRONMENT and "environment" in h:
            raise SealedDataTampered("sealed_data_tampered: header fields")
        if environment != self.environment:
            raise SealedForAnotherEnvironment(str(environment), self.environment)
        if fields[2] != self._provider.key_id:
            raise WrongKey(f"wrong_passphrase_or_key: sealed under key id {fields[2]!r}, not {self._provider.key_id!r}")
        if (fields[3], fields[4], fields[5]) != (party, purpose, name):
            raise SealedForAnother(
                f"sealed_for_another_party_or_purpose: sealed for {fields[3]!r}/{fields[4]!r}/{fields[5]!r}"
            )
        data_key = self._provider.unwrap_data_key(wrapped)
        try:
            return AESGCM(data_key).decrypt(nonce, blob[start + hlen :], blob[: start + hlen])
        except InvalidTag:
            raise SealedDataTampered("sealed_data_tampered: authentication failed") from None
