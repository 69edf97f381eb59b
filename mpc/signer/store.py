"""The peer's sealed state on disk: one file per vault (its public record and this party's
share), the pre-parameters, and a key-check canary. Everything secret is sealed with AEAD; the
associated data binds format version, key id, party and vault, so a file moved to another
vault or party, or edited, or sealed under another environment (production / test), fails to
open and the peer refuses to start. Files are written 0600 in 0700 folders (checked at start:
mpc/signer/hygiene.py).

Layout of data_dir:
    keycheck.sealed            proves the passphrase (a wrong one: refuse to start)
    vaults/<vault_id>.sealed   {"vault": record, "share": KeyShare bytes (hex)}
    preparams/*.sealed         this peer's pre-parameter pool (mpc.preparams.PreParamsPool)
Shares are written only after a ceremony has ended and the coordinator confirmed that every
party got the same group key (Commit); the old share of a reshared vault is then replaced.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import threading
from dataclasses import asdict, dataclass

from mpc.signer.hygiene import fsync_dir
from mpc.signer.sealer import SealedForAnotherEnvironment, Sealer, SealError

FORMAT = "custody-signer-share/1"
VAULT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class StoreError(Exception):
    """The data dir cannot be trusted (wrong passphrase, tampered or misplaced file)."""


@dataclass(frozen=True)
class VaultRecord:
    vault_id: str
    party: str  # this peer's party id in the vault's current committee
    committee: tuple[str, ...]  # party ids
    threshold: int
    public_key: str  # hex, 33 bytes
    chain_code: str  # hex, 32 bytes
    generation: int

    def peers(self) -> tuple[str, ...]:
        from mpc.wire.parties import party_peer

        return tuple(party_peer(p) for p in self.committee)


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    """`path` whole or not at all, created 0600: the .tmp is fsynced, renamed over `path`, then the
    folder is fsynced so the rename survives a crash."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)  # a crash's leftover: never reuse its mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _environment_message(path: pathlib.Path, exc: SealedForAnotherEnvironment) -> str:
    return (f"{path}: sealed under environment {exc.sealed!r}, this config says {exc.expected!r}; "
            f"a share never moves between environments")


class ShareStore:
    def __init__(self, data_dir: pathlib.Path, sealer: Sealer, key_id: str, peer: str):
        self.dir = pathlib.Path(data_dir)
        self.sealer = sealer
        self.key_id = key_id
        self.peer = peer
        self._lock = threading.Lock()
        self._vaults: dict[str, tuple[VaultRecord, bytes]] = {}

    def open(self) -> None:
        """Opens every sealed file once: any failure is a StoreError (refuse to start)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "vaults").mkdir(mode=0o700, exist_ok=True)
        check = self.dir / "keycheck.sealed"
        aad = dict(party=self.peer, purpose="keycheck", name=FORMAT)
        existing = list((self.dir / "vaults").glob("*.sealed"))
        if not check.exists():
            if existing:
                raise StoreError(f"{check} is missing but {len(existing)} sealed vault file(s) exist: tampered data dir")
            _write_atomic(check, self.sealer.seal(b"custody-keycheck", **aad))
        try:
            if self.sealer.open(check.read_bytes(), **aad) != b"custody-keycheck":
                raise StoreError("key check does not match")
        except SealedForAnotherEnvironment as exc:
            raise StoreError(_environment_message(check, exc)) from None
        except SealError as exc:
            raise StoreError(f"wrong passphrase (or tampered keycheck.sealed): cannot open sealed data ({exc})") from None
        for f in existing:
            vault_id = f.name[: -len(".sealed")]
            rec, share = self._read_vault(f, vault_id)
            self._vaults[vault_id] = (rec, share)

    def _read_vault(self, f: pathlib.Path, vault_id: str):
        try:
            plain = self.sealer.open(f.read_bytes(), party=self.peer, purpose="vault-share", name=vault_id)
            d = json.loads(plain)
            rec = VaultRecord(**{**d["vault"], "committee": tuple(d["vault"]["committee"])})
            share = bytes.fromhex(d["share"])
        except SealedForAnotherEnvironment as exc:
            raise StoreError(_environment_message(f, exc)) from None
        except (SealError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{f}: cannot be opened ({type(exc).__name__}): tampered or not ours") from None
        if rec.vault_id != vault_id:
            raise StoreError(f"{f}: names vault {rec.vault_id!r}")
        return rec, share

    def vault(self, vault_id: str) -> tuple[VaultRecord, bytes] | None:
        with self._lock:
            return self._vaults.get(vault_id)

    def vault_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._vaults)

    def put_vault(self, rec: VaultRecord, share: bytes) -> None:
        assert VAULT_RE.match(rec.vault_id), rec.vault_id
        plain = json.dumps({"vault": asdict(rec), "share": share.hex()}).encode()
        blob = self.sealer.seal(plain, party=self.peer, purpose="vault-share", name=rec.vault_id)
        with self._lock:
            _write_atomic(self.dir / "vaults" / f"{rec.vault_id}.sealed", blob)
            self._vaults[rec.vault_id] = (rec, share)

    def drop_vault(self, vault_id: str) -> None:
        """After a reshare that left this peer out of the new committee: the old share goes."""
        with self._lock:
            self._vaults.pop(vault_id, None)
            f = self.dir / "vaults" / f"{vault_id}.sealed"
            if f.exists():
                f.unlink()
