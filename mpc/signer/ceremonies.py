"""Builds the engine's tss sessions for one peer's part in a ceremony (keygen, sign, reshare).

Party ids are `<peer>:<generation>`: a vault born at generation 0, each reshare makes the new
committee's parties at generation + 1, so old and new committees never share a party id
(tss-lib cannot have one party in both) and a peer in both runs two parties.
"""

from __future__ import annotations

import hashlib

from bip32 import BIP32

from mpc.transport.envelope import party_peer


def party_id(peer: str, generation: int) -> str:
    return f"{peer}:{generation}"


def generation_of(party: str) -> int:
    return int(party.rpartition(":")[2])


def sub_session_id(ceremony_id: str, index: int) -> str:
    """The tss session id of digest `index` of a ceremony (hex, 16 bytes, bound by tss-lib v3)."""
    return hashlib.sha256(bytes.fromhex(ceremony_id) + index.to_bytes(4, "big")).digest()[:16].hex()


def _engine():
    from mpc import engine  # loads the tss-lib shim: never import before a fork

    return engine


def _pids(parties):
    # The engine derives each party's tss-lib key (its Shamir x-coordinate) from the id.
    e = _engine()
    return [e.PartyId.of(p) for p in sorted(parties)]


def keygen(self_party: str, parties, threshold: int, preparams, session_id: str):
    return _engine().keygen_session(self_party, _pids(parties), threshold, preparams, bytes.fromhex(session_id))


def sign(self_party: str, signers, share_bytes: bytes, digest: bytes, session_id: str, path=()):
    e = _engine()
    share = e.KeyShare.from_bytes(share_bytes)
    return e.sign_session(self_party, _pids(signers), share, digest, bytes.fromhex(session_id), tuple(path))


def reshare(self_party: str, old, new, old_threshold: int, new_threshold: int, share_bytes: bytes | None,
            preparams, session_id: str, public_key: bytes, chain_code: bytes):
    e = _engine()
    share = e.KeyShare.from_bytes(share_bytes) if share_bytes is not None else None
    return e.reshare_session(self_party, _pids(old), _pids(new), old_threshold, new_threshold, share, preparams,
                             bytes.fromhex(session_id), public_key, chain_code)


class RecordKeys:
    """VaultKeys from a vault's public record (group key + chain code): public derivation only."""

    def __init__(self, public_key: bytes, chain_code: bytes):
        assert len(public_key) == 33 and len(chain_code) == 32
        self._bip32 = BIP32(chaincode=chain_code, pubkey=public_key)
        self.public_key = public_key

    def child_public_key(self, path) -> bytes:
        if not path:
            return self.public_key
        return self._bip32.get_pubkey_from_path(list(path))


def peers_of(parties) -> list[str]:
    return sorted({party_peer(p) for p in parties})
