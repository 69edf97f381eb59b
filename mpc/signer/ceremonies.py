"""Builds the engine's tss sessions for one peer's part in a ceremony (keygen, sign, reshare).
Party ids and sub-session ids are the wire's (mpc/wire/parties.py)."""

from __future__ import annotations


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
