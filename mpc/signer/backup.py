"""Encrypted backup of one share to the operator's offline recovery key (X25519 sealed box).

The backup holds one party's share, never more: restoring it gives that peer its share back;
recovering a lost peer otherwise is a reshare to a new committee (no key is ever rebuilt).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from nacl.public import PrivateKey, PublicKey, SealedBox

FORMAT = "custody-share-backup/1"


def export_backup(store, vault_id: str, recovery_public_key: bytes, out_path) -> None:
    held = store.vault(vault_id)
    if held is None:
        raise KeyError(f"vault {vault_id!r} is not held by this peer")
    if len(recovery_public_key) != 32:
        raise ValueError("the recovery key is a 32-byte X25519 public key")
    rec, share = held
    plain = json.dumps({"format": FORMAT, "peer": store.peer, "vault": asdict(rec), "share": share.hex()}).encode()
    blob = SealedBox(PublicKey(recovery_public_key)).encrypt(plain)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)


def open_backup(blob: bytes, recovery_private_key: bytes) -> dict:
    """Offline, on the recovery machine: the backup's record and share."""
    d = json.loads(SealedBox(PrivateKey(recovery_private_key)).decrypt(blob))
    if d.get("format") != FORMAT:
        raise ValueError("not a share backup")
    return d
