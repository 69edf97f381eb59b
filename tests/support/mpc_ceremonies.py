"""MPC ceremonies for tests: real tss-lib, all parties in this process, every message through
its wire bytes (mpc.local.run_local). Pre-parameters are the fixture ones (fixture
pre-params: never in production), each party its own file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from mpc import engine
from mpc.local import run_local
from support.preparams import fixture_preparams

KEYGEN_TIMEOUT_S = 240


@dataclasses.dataclass
class Committee:
    parties: list  # [PartyId]
    threshold: int
    shares: dict  # party id -> KeyShare

    @property
    def public_key(self) -> bytes:
        return next(iter(self.shares.values())).public_key


def run_keygen(names: list[str], threshold: int, preparams_offset: int) -> Committee:
    parties = [engine.PartyId.of(n) for n in names]
    pps = fixture_preparams(len(parties), offset=preparams_offset)
    sid = engine.new_session_id()
    sessions = {p.id: engine.keygen_session(p.id, parties, threshold, pp, sid) for p, pp in zip(parties, pps)}
    run = run_local(sessions, timeout_s=KEYGEN_TIMEOUT_S)
    for s in sessions.values():
        s.close()
    assert not run.errors, f"keygen failed: {run.errors}"
    assert set(run.results) == {p.id for p in parties}, f"keygen results from {sorted(run.results)}"
    return Committee(parties, threshold, run.results)


def sign(committee: Committee, signer_ids: list[str], digest: bytes, path: tuple = (), route=None, timeout_s: float = 60):
    by_id = {p.id: p for p in committee.parties}
    signers = [by_id[i] for i in signer_ids]
    sid = engine.new_session_id()
    sessions = {p.id: engine.sign_session(p.id, signers, committee.shares[p.id], digest, sid, path) for p in signers}
    try:
        return run_local(sessions, timeout_s=timeout_s, route=route), sessions
    finally:
        for s in sessions.values():
            s.close()


def random_digest() -> bytes:
    seed = os.urandom(32)
    print(f"digest seed {seed.hex()}")  # for reproduction
    return hashlib.sha256(seed).digest()
