"""Party ids, tss sub-session ids and the public keys replies are checked against.

Party ids are `<peer>:<generation>`: a vault born at generation 0, each reshare makes the new
committee's parties at generation + 1, so old and new committees never share a party id
(tss-lib cannot have one party in both) and a peer in both runs two parties.
"""

from __future__ import annotations

import functools
import hashlib

from bip32 import BIP32

from node import limits


def party_id(peer: str, generation: int) -> str:
    return f"{peer}:{generation}"


def party_peer(party: str) -> str:
    """The peer that runs a party: the party id without its generation."""
    return party.rpartition(":")[0] or party


def generation_of(party: str) -> int:
    return int(party.rpartition(":")[2])


def peers_of(parties) -> list[str]:
    return sorted({party_peer(p) for p in parties})


def sub_session_id(ceremony_id: str, index: int) -> str:
    """The tss session id of digest `index` of a ceremony (hex, 16 bytes, bound by tss-lib v3)."""
    return hashlib.sha256(bytes.fromhex(ceremony_id) + index.to_bytes(4, "big")).digest()[:16].hex()


class RecordKeys:
    """VaultKeys from a vault's public record (group key + chain code): public derivation only."""

    def __init__(self, public_key: bytes, chain_code: bytes):
        assert len(public_key) == 33 and len(chain_code) == 32
        BIP32(chaincode=chain_code, pubkey=public_key)  # a key that is not a point fails here, as before
        self.public_key = public_key
        self.chain_code = chain_code

    def child_public_key(self, path) -> bytes:
        if not path:
            return self.public_key
        return _child_public_key(self.public_key, self.chain_code, tuple(path))


@functools.lru_cache(maxsize=limits.CLUSTER_CHILD_KEYS_CACHED_MAX)
def _child_public_key(public_key: bytes, chain_code: bytes, path: tuple[int, ...]) -> bytes:
    """Public BIP32 derivation, a pure function: kept for the paths a peer checks again and
    again (a request's inputs and change, every request)."""
    return BIP32(chaincode=chain_code, pubkey=public_key).get_pubkey_from_path(list(path))
