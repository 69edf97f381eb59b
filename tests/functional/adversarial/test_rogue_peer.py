"""A rogue peer among three real signer processes: peer-2 runs the test-only RogueParticipant
(rogue.py) with faults chosen per test. What it sends on its own mTLS channel is checked by the
honest peers; what it withholds is found by their deadlines, and signing goes on without it.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from mpc.proto import signer_pb2 as pb
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from tests.functional.adversarial.harness import RogueNode, peer_stub, recorded
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal
from tests.support.procs import wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PEERS = ("peer-1", "peer-2", "peer-3")
ROGUE = "peer-2"  # the coordinator's first choice of co-signer


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 3, 1, round_timeout_ms=5_000, rogues={ROGUE: {"record_envelopes": True}})


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("hot-1", PEERS, 1)


def withdrawal(cluster, vault) -> dict:
    tx, intent = btc_withdrawal(RecordKeys(vault.public_key, vault.chain_code), vault.vault_id)
    return rq.sign_request(vault.vault_id, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),))


def test_forged_sender_and_replayed_envelopes_are_refused(cluster, vault):
    signed = RogueNode(cluster).sign("peer-1", withdrawal(cluster, vault))
    assert signed.ok and ROGUE in signed.committee, signed
    real = recorded(cluster, ROGUE, "peer-1")[-1]
    before = cluster.metric("peer-1", "custody_signer_envelopes_refused_total")
    # peer-3 (a pinned peer) sends an envelope that claims to come from peer-2.
    forged = pb.Envelope()
    forged.CopyFrom(real)
    ack = peer_stub(cluster, "peer-3", "peer-1").Deliver(forged, timeout=10)
    assert (ack.ok, ack.reason) == (False, "sender_not_authenticated_peer")
    # peer-2's own envelope from a finished session, replayed byte for byte over its channel.
    ack = peer_stub(cluster, ROGUE, "peer-1").Deliver(real, timeout=10)
    assert (ack.ok, ack.reason) == (False, "session_finished")
    # ... and the same envelope re-addressed to a session id peer-1 never ran.
    moved = pb.Envelope()
    moved.CopyFrom(real)
    moved.session_id = os.urandom(16).hex()
    ack = peer_stub(cluster, ROGUE, "peer-1").Deliver(moved, timeout=10)
    assert (ack.ok, ack.reason) == (False, "unknown_session")
    assert cluster.metric("peer-1", "custody_signer_envelopes_refused_total") == before + 3


def test_a_peer_that_hangs_mid_session_then_dies_is_named_and_a_new_quorum_signs(cluster, vault):
    cluster.set_faults(ROGUE, {"hold_at_round": 4, "protocol": "sign"})  # read at its next Join
    node = RogueNode(cluster)
    try:
        # peer-1 may rightly sign with peer-3 alone when peer-2 misses its probe on a loaded
        # machine; only a session that peer-2 joins tests anything here.
        for _ in range(3):
            result = {}
            body = withdrawal(cluster, vault)
            t = threading.Thread(target=lambda: result.setdefault("reply", node.sign("peer-1", body)))
            holds = cluster.stderr(ROGUE).count("fault_hold")
            t.start()
            wait_until(lambda: cluster.stderr(ROGUE).count("fault_hold") > holds or "reply" in result, 60,
                       "peer-2 holds at round 4 of the first session (or peer-1 signs without it)")
            if cluster.stderr(ROGUE).count("fault_hold") > holds:
                break
            t.join()
            skipped = result["reply"]
            assert skipped.ok and skipped.attempts == 1 and sorted(skipped.committee) == ["peer-1", "peer-3"], skipped
        else:
            raise AssertionError("peer-1 never chose peer-2 in three requests, though it was up")
        cluster.procs[ROGUE].kill(signal.SIGKILL)
        t.join(120)
        reply = result["reply"]
        assert reply.ok, reply.reason
        assert reply.attempts == 2 and list(reply.culprits) == [ROGUE], (reply.attempts, reply.culprits, reply.reason)
        assert "peer_unreachable" in reply.reason or "round_timeout" in reply.reason, reply.reason
        assert sorted(reply.committee) == ["peer-1", "peer-3"]
        assert cluster.metric("peer-1", "custody_signer_aborts_total", protocol="sign", culprit=ROGUE) >= 1
    finally:
        cluster.procs[ROGUE].kill(signal.SIGKILL)  # still held if the test failed before killing it
        cluster.set_faults(ROGUE, {"record_envelopes": True})
        cluster.start(ROGUE)


def test_names_a_peer_sends_never_become_metric_labels(cluster, vault):
    """A rogue peer (playing coordinator: it Joins peer-1 directly) aborts the ceremony naming
    culprits of its own invention, and no evidence: peer-1 ends the session (any peer may
    refuse) but names nobody, so no peer can grow the label set of another's metrics."""
    signed = RogueNode(cluster).signed(withdrawal(cluster, vault))
    cid = os.urandom(16).hex()
    as_rogue = peer_stub(cluster, ROGUE, "peer-1")
    ack = as_rogue.Join(pb.JoinRequest(session_id=cid, protocol="sign", peers=["peer-1", ROGUE],
                                       request=signed.SerializeToString()), timeout=30)
    assert ack.ok, ack.reason
    invented = [f"no-such-peer-{i}" for i in range(3)]
    before = cluster.metrics("peer-1")
    unknown_before = cluster.metric("peer-1", "custody_signer_aborts_total", culprit="unknown")
    ack = as_rogue.Abort(pb.AbortRequest(session_id=cid, culprits=invented, reason="made up"), timeout=10)
    assert (ack.ok, ack.reason) == (False, "culprits_unproven")
    assert as_rogue.Await(pb.AwaitRequest(session_id=cid, timeout_ms=1_000), timeout=10).state == "aborted"
    assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit="unknown") == unknown_before
    assert not any(name in cluster.metrics("peer-1") for name in invented)
    assert before.count("custody_signer_aborts_total{") <= cluster.metrics("peer-1").count("custody_signer_aborts_total{") <= \
        before.count("custody_signer_aborts_total{") + 1  # at most the series culprit="none" is new
