"""A 2-of-3 cluster (t=1): three `custody signer` processes over gRPC + mTLS on 127.0.0.1.

The story: a vault is born by distributed key generation; a real regtest withdrawal is signed
(each peer parses the transaction and computes the digest itself); too few approvals are
refused with nothing signed; a peer down does not stop signing; a ceremony whose coordinator
vanished expires; a tampered share file or a wrong passphrase stops a peer from starting.
Attacks by a compromised node or a rogue peer: tests/functional/adversarial/.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from chains.bitcoin import tx as btx
from mpc.proto import signer_pb2 as pb
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from node import limits
from node.ports import SigningRefused
from tests.functional.adversarial.harness import peer_stub
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal
from tests.support.procs import wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, round_timeout_ms=5_000)


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("hot-1", PEERS, 1)


def approved(cluster, vault, **kw):
    keys = RecordKeys(vault.public_key, vault.chain_code)
    tx, intent = btc_withdrawal(keys, vault.vault_id, **kw)
    return tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),)


def assert_refused(fn, reason: str):
    with pytest.raises(SigningRefused) as e:
        fn()
    assert e.value.reason.startswith(reason), f"expected {reason!r}, got {e.value.reason!r}"
    return e.value


def test_keygen_gives_every_peer_a_sealed_share_of_one_key(cluster, vault):
    assert vault.committee == ("peer-1:0", "peer-2:0", "peer-3:0") and vault.threshold == 1
    assert len(vault.public_key) == 33 and vault.public_key[0] in (2, 3) and len(vault.chain_code) == 32
    for name in PEERS:
        assert cluster.health(name)["vaults"] == 1
        sealed = (cluster.dir / name / "data" / "vaults" / "hot-1.sealed").read_bytes()
        # Sealed at rest: no trace of tss-lib's JSON share or the key in the clear.
        assert b'"Xi":' not in sealed and b'"PaillierSK"' not in sealed and vault.public_key.hex().encode() not in sealed


def test_signs_a_bitcoin_withdrawal_with_two_inputs(cluster, vault):
    tx, intent, approvals = approved(cluster, vault, n_inputs=2)
    before = cluster.signatures_total()
    out = cluster.client().sign(vault, tx, intent, approvals)
    assert [d.path for d, _ in out] == [(0, 0), (0, 1)]
    # The digests are BIP143's, as the chain adapter computes them, and the signatures attach.
    keys = RecordKeys(vault.public_key, vault.chain_code)
    t, _ = __import__("chains.bitcoin.intent", fromlist=["x"]).BitcoinIntentChecker().rebuild(tx, keys)
    assert [d.digest for d, _ in out] == btx.sighashes(t)
    signed = btx.attach(t, [s for _, s in out])
    assert len(signed) > len(tx.payload)
    # two digests, two signers each (the other signer counts when its session has ended)
    wait_until(lambda: cluster.signatures_total() == before + 2 * 2, 30, "both signers counted both signatures")


def test_approvals_below_the_peers_quorum_are_refused(cluster, vault):
    # 2 BTC needs two approvals in every peer's policy (band above 1 BTC).
    tx, intent, approvals = approved(cluster, vault, amount_sats=2 * 100_000_000)
    before = cluster.signatures_total()
    assert_refused(lambda: cluster.client().sign(vault, tx, intent, approvals), "approvals_below_quorum")
    assert_refused(lambda: cluster.client().sign(vault, tx, intent, ()), "approvals_below_quorum")
    assert cluster.signatures_total() == before


def test_a_ceremony_joined_but_never_started_expires(cluster, vault):
    """The coordinator dies between Join and Start (played here by Joining peer-2 directly, as
    peer-1, and never starting): peer-2 does not keep the session past the start deadline —
    it would count against its active-session bound for good — a late Start is refused, and
    signing goes on."""
    tx, intent, approvals = approved(cluster, vault)
    raw, sig = rq.sign_body(rq.sign_request(vault.vault_id, tx, intent, approvals), cluster.node_key())
    stub = peer_stub(cluster, as_peer="peer-1", to="peer-2")
    cid = os.urandom(16).hex()
    ack = stub.Join(pb.JoinRequest(session_id=cid, protocol="sign", peers=["peer-1", "peer-2"],
                                   request=pb.SignedRequest(request=raw, node_signature=sig).SerializeToString()), timeout=10)
    assert ack.ok, ack.reason
    assert cluster.health("peer-2")["active_sessions"] == 1
    wait_until(lambda: cluster.health("peer-2")["active_sessions"] == 0, limits.CLUSTER_START_DEADLINE_MS / 1000 + 20,
               "peer-2 drops the ceremony that was never started")
    assert "start_deadline_passed" in cluster.stderr("peer-2")
    late = stub.Start(pb.StartRequest(session_id=cid), timeout=10)
    assert (late.ok, late.reason) == (False, "session_aborted")
    before = cluster.signatures_total()
    tx, intent, approvals = approved(cluster, vault)
    cluster.client().sign(vault, tx, intent, approvals)
    assert cluster.signatures_total() > before


def test_one_peer_down_signing_continues_on_the_others(cluster, vault):
    cluster.procs["peer-2"].kill()  # the coordinator's first choice
    try:
        tx, intent, approvals = approved(cluster, vault)
        out = cluster.client().sign(vault, tx, intent, approvals)
        assert len(out) == 1
    finally:
        cluster.start("peer-2")


def _start_expecting_refusal(cluster, name: str, what: str):
    p = subprocess.run([*__import__("tests.support.cluster", fromlist=["x"]).CUSTODY, "signer", "--config", str(cluster.config(name))],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[3])})
    assert p.returncode == 2, f"{name} started despite {what}: rc={p.returncode}\n{p.stderr[-2000:]}"
    return p.stderr


def test_a_tampered_share_or_a_wrong_passphrase_stops_the_peer_from_starting(cluster, vault):
    cluster.procs["peer-3"].stop()
    share = cluster.dir / "peer-3" / "data" / "vaults" / "hot-1.sealed"
    original = share.read_bytes()
    passphrase = cluster.dir / "peer-3" / "passphrase"
    good = passphrase.read_text()
    try:
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        share.write_bytes(bytes(flipped))
        assert "tampered" in _start_expecting_refusal(cluster, "peer-3", "a tampered share")
        share.write_bytes(original)
        # A share file moved under another vault's name does not open either (associated data).
        share.rename(share.with_name("cold-1.sealed"))
        assert "tampered" in _start_expecting_refusal(cluster, "peer-3", "a share under another vault id")
        share.with_name("cold-1.sealed").rename(share)
        passphrase.write_text("a-wrong-passphrase-of-length")
        assert "wrong passphrase" in _start_expecting_refusal(cluster, "peer-3", "a wrong passphrase")
    finally:
        passphrase.write_text(good)
        share.write_bytes(original)
        cluster.start("peer-3")
    assert cluster.health("peer-3")["vaults"] == 1


def test_health_metrics_and_logs_without_secrets(cluster, vault):
    for name in PEERS:
        h = cluster.health(name)
        assert h["ready"] and h["peer"] == name and h["environment"] == "test"
    m = cluster.metrics("peer-1")
    for family in ("custody_signer_sessions_total", "custody_signer_session_seconds", "custody_signer_aborts_total",
                   "custody_signer_requests_refused_total", "custody_signer_signatures_total"):
        assert family in m, family
    assert cluster.metric("peer-1", "custody_signer_sessions_total", protocol="sign", outcome="done") >= 1
    logs = cluster.stderr("peer-1")
    assert "session=" in logs and "round=" in logs and "peer=peer-1" in logs
    assert (cluster.dir / "peer-1" / "passphrase").read_text() not in logs


def test_signs_an_ethereum_transfer_and_refuses_one_that_pays_more(cluster, vault):
    from chains.ethereum import tx as etx
    from tests.support.cluster import eth_withdrawal

    keys = RecordKeys(vault.public_key, vault.chain_code)
    tx, intent = eth_withdrawal(keys, vault.vault_id)
    approvals = (rq.approve(intent, "approver-1", cluster.approver("approver-1")),)
    [(digest, sig)] = cluster.client().sign(vault, tx, intent, approvals)
    assert digest.digest == etx.digest_of(tx.payload)
    assert etx.recover_address(digest.digest, sig) == etx.address_of(keys.child_public_key((0, 0)))
    bad_tx, bad_intent = eth_withdrawal(keys, vault.vault_id, tamper="amount")
    bad_approvals = (rq.approve(bad_intent, "approver-1", cluster.approver("approver-1")),)
    err = assert_refused(lambda: cluster.client().sign(vault, bad_tx, bad_intent, bad_approvals), "transaction_does_not_match_intent")
    assert "amount_mismatch" in str(err)
