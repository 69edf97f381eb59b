"""Proof of assets signed by real tss-lib: a 2-of-3 key generation (fixture pre-params: never
in production), then the reserves message signed by two parties for child keys at BIP32
paths — every party computing the digest itself from (chain, snapshot_id, root) — and the
assets file checked by custody-verify. No party and no test ever holds the whole key."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys

import pytest

from mpc import engine
from mpc.local import run_local
from node.ports import EcdsaSignature, ReservesAddress
from proofs import assets as ast
from proofs import snapshot
from tests.support import por_world as W
from tests.support.preparams import fixture_preparams

pytestmark = pytest.mark.functional
KEYGEN_TIMEOUT_S = 240
SIGN_TIMEOUT_S = 120


class InProcessMpcReserves:
    """ReservesSigner + ReservesBalances over an in-process tss-lib committee (all parties in
    this process, every message through its wire bytes). The signer cluster does the same
    across processes over gRPC + mTLS."""

    def __init__(self, shares: dict, signer_ids: list[str], holdings: list[tuple[str, str, tuple, int]]):
        self.shares, self.signer_ids = shares, signer_ids
        any_share = next(iter(shares.values()))
        self.addresses = [
            ReservesAddress(chain, asset, ast.address_for(chain, any_share.child_public_key(path), "regtest"),
                            "vault-hot", path, balance)
            for chain, asset, path, balance in holdings
        ]
        self.sessions_run = 0

    def funded_addresses(self, chains):
        return list(self.addresses)

    def sign_reserves(self, chain, vault_id, path, snapshot_id, root_hash) -> EcdsaSignature:
        committee = next(iter(self.shares.values())).committee
        signers = [p for p in committee if p.id in self.signer_ids]
        sid = engine.new_session_id()
        sessions = {}
        for p in signers:
            # Each party builds the message and its digest itself: it signs nothing else.
            digest = ast.reserves_digest(chain, snapshot_id, root_hash)
            sessions[p.id] = engine.sign_session(p.id, signers, self.shares[p.id], digest, sid, path)
        try:
            run = run_local(sessions, timeout_s=SIGN_TIMEOUT_S)
        finally:
            for s in sessions.values():
                s.close()
        assert not run.errors, run.errors
        sig = next(iter(run.results.values()))
        self.sessions_run += 1
        return EcdsaSignature(sig.r, sig.s, sig.recovery_id, sig.public_key)


@pytest.fixture(scope="module")
def committee():
    parties = [engine.PartyId.of(n) for n in ("signer-1", "signer-2", "signer-3")]
    sid = engine.new_session_id()
    pps = fixture_preparams(3, offset=0)
    sessions = {p.id: engine.keygen_session(p.id, parties, 1, pp, sid) for p, pp in zip(parties, pps)}
    try:
        run = run_local(sessions, timeout_s=KEYGEN_TIMEOUT_S)
    finally:
        for s in sessions.values():
            s.close()
    assert not run.errors, f"keygen failed: {run.errors}"
    return run.results


def test_reserves_signed_by_tss_lib_verify_with_the_cli(committee, tmp_path):
    holdings = [
        ("bitcoin", "BTC", (0, 1), 100_000_000),
        ("bitcoin", "BTC", (0, 2), 2**70 + 60_000_000),
        ("ethereum", "ETH", (0, 3), 3 * 10**18),
        ("ethereum", "USDT", (0, 3), 10**12 + 5_000_001),
    ]
    mpc = InProcessMpcReserves(committee, ["signer-1", "signer-3"], holdings)
    store = snapshot.SnapshotStore(tmp_path / "store")
    key = W.Ed25519PrivateKey.generate()
    published = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), mpc, mpc, store, key,
                                       dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc))
    assert mpc.sessions_run == 3  # (0, 3) holds ETH and USDT: one signature serves both entries
    world = W.World(tmp_path, store, key, W.public_hex(key), published)
    files = world.write_files()
    bin_ = pathlib.Path(sys.executable).parent / "custody-verify"
    r = subprocess.run([str(bin_), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                        world.public_key_hex], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "valid: 4 address signatures" in r.stdout
    # The addresses are the committee's child keys: a signature by another path is refused.
    doc = json.loads(files["assets"].read_text())
    doc["addresses"][0]["signature"], doc["addresses"][1]["signature"] = doc["addresses"][1]["signature"], doc["addresses"][0]["signature"]
    files["assets"].write_text(json.dumps(doc))
    r = subprocess.run([str(bin_), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                        world.public_key_hex], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("invalid: signature_wrong_key"), r.stderr
