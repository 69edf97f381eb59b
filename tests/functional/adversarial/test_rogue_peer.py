"""A rogue peer among three real signer processes: peer-2 runs the test-only RogueParticipant
(rogue.py) with faults chosen per test. What it sends on its own mTLS channel is checked by the
honest peers; what it withholds is found by their deadlines, and signing goes on without it.
Blame needs proof: an Abort that names a peer without evidence names nobody, a peer that
accuses one outside the session proves its own lie, and no flood costs the honest peers more
than a named bound. The tests that leave peer-2 quarantined at peer-1 come last.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading

import pytest

from mpc.proto import signer_pb2 as pb
from mpc.transport import envelope as envl
from mpc.wire import parties as wp
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from node import limits
from node.ports import SigningDigest
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
    assert "made up" not in cluster.metrics("peer-1")
    assert as_rogue.Await(pb.AwaitRequest(session_id=cid, timeout_ms=1_000), timeout=10).state == "aborted"
    assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit="unknown") == unknown_before
    assert not any(name in cluster.metrics("peer-1") for name in invented)
    assert before.count("custody_signer_aborts_total{") <= cluster.metrics("peer-1").count("custody_signer_aborts_total{") <= \
        before.count("custody_signer_aborts_total{") + 1  # at most the series culprit="none" is new


def rogue_signer(cluster) -> envl.MessageSigner:
    return envl.MessageSigner((cluster.dir / ROGUE / "tls.key").read_bytes())


def rogue_joins_peer_1(cluster, body: dict) -> str:
    """peer-2 plays coordinator: it Joins peer-1 (alone) to a ceremony with a node-signed
    request it got; returns the ceremony id."""
    cid = os.urandom(16).hex()
    ack = peer_stub(cluster, ROGUE, "peer-1").Join(pb.JoinRequest(session_id=cid, protocol="sign", peers=["peer-1", ROGUE],
                                                                  request=RogueNode(cluster).signed(body).SerializeToString()), timeout=60)
    assert ack.ok, ack.reason
    return cid


def test_a_rogue_coordinators_forged_abort_is_refused(cluster, vault):
    """peer-2, coordinating, aborts naming peer-1 with "evidence" of peer-1's equivocation that
    it signed itself: peer-1 checks it against peer-1's own pinned key and names nobody."""
    cid = rogue_joins_peer_1(cluster, withdrawal(cluster, vault))
    forged = pb.Evidence(kind="equivocation", culprit="peer-1")
    for payload in (b"\x02" + b"a" * 32, b"\x02" + b"b" * 32):
        h = pb.Envelope(session_id=wp.sub_session_id(cid, 0), protocol="sign", round=1, sender=wp.party_id("peer-1", 0),
                        recipients=[wp.party_id(ROGUE, 0)], payload_hash=envl.payload_hash(payload), is_broadcast=True,
                        kind=envl.message_kind(payload))
        h.signature = rogue_signer(cluster).sign(envl.envelope_digest(h))
        forged.envelopes.add().CopyFrom(h)
    named_before = cluster.metric("peer-1", "custody_signer_aborts_total", culprit="peer-1")
    as_rogue = peer_stub(cluster, ROGUE, "peer-1")
    ack = as_rogue.Abort(pb.AbortRequest(session_id=cid, culprits=["peer-1"], reason="equivocation", evidence=[forged]), timeout=10)
    assert (ack.ok, ack.reason) == (False, "evidence_invalid")
    result = as_rogue.Await(pb.AwaitRequest(session_id=cid, timeout_ms=1_000), timeout=10)
    assert (result.state, list(result.culprits), len(result.evidence)) == ("aborted", [], 0)
    assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit="peer-1") == named_before
    # /health says what an operator needs and nothing more, and reading it twice changes nothing.
    h = cluster.health("peer-1")
    assert set(h) == {"peer", "ready", "environment", "vaults", "active_sessions", "quarantined", "conflicts"}
    assert cluster.health("peer-1") == h


def test_a_peer_flooding_joins_echoes_and_aborts_holds_bounded_state_and_signing_goes_on(cluster, vault):
    node = RogueNode(cluster)
    as_rogue = peer_stub(cluster, ROGUE, "peer-1")
    active_before = cluster.health("peer-1")["active_sessions"]
    # One node-signed request replayed in many Joins: each replaces the one before.
    body = withdrawal(cluster, vault)
    cids = [rogue_joins_peer_1(cluster, body) for _ in range(10)]
    assert cluster.health("peer-1")["active_sessions"] == active_before + 1
    assert as_rogue.Await(pb.AwaitRequest(session_id=cids[0], timeout_ms=1_000), timeout=10).state == "aborted"
    # Distinct requests: one coordinator holds at most CLUSTER_SESSIONS_PER_COORDINATOR_MAX.
    many = rq.sign_request(vault.vault_id, None, None, opaque_digests=[
        SigningDigest((0, i), os.urandom(32)) for i in range(limits.CLUSTER_SESSIONS_PER_COORDINATOR_MAX - 1)])
    big = rogue_joins_peer_1(cluster, many)
    one_more = rq.sign_request(vault.vault_id, None, None, opaque_digests=[SigningDigest((0, 1), os.urandom(32))])
    ack = as_rogue.Join(pb.JoinRequest(session_id=os.urandom(16).hex(), protocol="sign", peers=["peer-1", ROGUE],
                                       request=node.signed(one_more).SerializeToString()), timeout=60)
    assert (ack.ok, ack.reason) == (False, "too_many_sessions_for_coordinator")
    # Echoes into a joined session: held up to CLUSTER_ECHOES_PER_PEER_SESSION_MAX, then refused.
    sid, me = wp.sub_session_id(cids[-1], 0), rogue_signer(cluster)
    replies = []
    for i in range(limits.CLUSTER_ECHOES_PER_PEER_SESSION_MAX + 1):
        h = pb.Envelope(session_id=sid, protocol="sign", round=i % 16, sender=wp.party_id("peer-1", 0), recipients=[wp.party_id(ROGUE, 0)],
                        payload_hash=hashlib.sha256(i.to_bytes(4, "big")).digest(), is_broadcast=True, kind="tag:2")
        e = pb.Echo(session_id=sid, echoer=ROGUE, broadcast=h)
        e.signature = me.sign(envl.echo_digest(e))
        replies.append(as_rogue.EchoHashes(e, timeout=10))
    assert all(r.ok for r in replies[:-1]) and (replies[-1].ok, replies[-1].reason) == (False, "echo_limit_reached")
    # Awaits that hold peer-1's RPC threads: at most CLUSTER_AWAITS_PER_PEER_MAX wait at once.
    waits = [as_rogue.Await.future(pb.AwaitRequest(session_id=cids[-1], timeout_ms=5_000), timeout=30)
             for _ in range(limits.CLUSTER_AWAITS_PER_PEER_MAX + 4)]
    states = [f.result().state for f in waits]
    assert states.count("prepared") <= limits.CLUSTER_AWAITS_PER_PEER_MAX and states.count("too_many_awaits") >= 4, states
    # Aborts of sessions that do not exist: refused, nothing kept, no new metric series.
    series = len(cluster.metrics("peer-1").splitlines())
    for _ in range(100):
        ack = as_rogue.Abort(pb.AbortRequest(session_id=os.urandom(16).hex(), culprits=["peer-3"], reason="flood"), timeout=10)
        assert (ack.ok, ack.reason) == (False, "unknown_session")
    assert len(cluster.metrics("peer-1").splitlines()) == series
    # Through all of it, the honest peers sign (peer-1 has room beside the rogue's sessions).
    reply = node.sign("peer-1", withdrawal(cluster, vault))
    assert reply.ok, reply.reason
    for cid in (cids[-1], big):  # a coordinator may end its own ceremonies
        as_rogue.Abort(pb.AbortRequest(session_id=cid, reason="done flooding"), timeout=10)
    assert cluster.health("peer-1")["active_sessions"] == active_before


def sign_with_rogue_in_quorum(cluster, body_fn, attempts: int = 3) -> pb.CeremonyReply:
    """peer-1's reply to the first request whose first quorum held peer-2 (peer-1 rightly signs
    with peer-3 alone when peer-2 misses its probe on a loaded machine)."""
    node = RogueNode(cluster)
    for _ in range(attempts):
        reply = node.sign("peer-1", body_fn())
        assert reply.ok, reply.reason
        if reply.attempts > 1 or ROGUE in reply.committee:
            return reply
    raise AssertionError(f"peer-1 never chose peer-2 in {attempts} requests, though it was up")


def test_a_peer_that_stalls_after_round_1_is_named_by_the_coordinators_own_deadline(cluster, vault):
    cluster.set_faults(ROGUE, {"hold_at_round": 2, "protocol": "sign", "record_envelopes": True})
    try:
        reply = sign_with_rogue_in_quorum(cluster, lambda: withdrawal(cluster, vault))
        assert reply.attempts == 2 and list(reply.culprits) == [ROGUE], (reply.attempts, reply.culprits, reply.reason)
        assert "round_timeout" in reply.reason and sorted(reply.committee) == ["peer-1", "peer-3"], reply.reason
        assert cluster.health("peer-1")["conflicts"] == []  # a timeout the coordinator saw itself is proof
    finally:
        cluster.set_faults(ROGUE, {"record_envelopes": True})


def test_a_peer_that_accuses_an_honest_one_isolates_itself_and_the_quarantine_survives_a_restart(cluster, vault):
    """The 7 Dec finding: peer-2 names peer-3 in every session, though peer-3 is not in it. Each
    accusation proves peer-2's own lie; peer-2 ends up quarantined, peer-3 never."""
    cluster.set_faults(ROGUE, {"accuse": "peer-3", "protocol": "sign"})
    try:
        for _ in range(limits.CLUSTER_QUARANTINE_ABORTS + 2):
            reply = sign_with_rogue_in_quorum(cluster, lambda: withdrawal(cluster, vault))
            assert "peer-3" not in reply.culprits and sorted(reply.committee) == ["peer-1", "peer-3"], reply
            assert list(reply.culprits) == [ROGUE], reply
            if cluster.health("peer-1")["quarantined"]:
                break
        h = cluster.health("peer-1")
        assert (h["quarantined"], h["conflicts"]) == ([ROGUE], []), h
        assert cluster.metric("peer-1", "custody_signer_blame_alerts_total", kind="false_accusation") >= 1
        assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit="peer-3") == 0
        # The next request goes straight to peer-3, first time.
        reply = RogueNode(cluster).sign("peer-1", withdrawal(cluster, vault))
        assert reply.ok and reply.attempts == 1 and sorted(reply.committee) == ["peer-1", "peer-3"], reply
        # The coordinator restarts: it forgets nothing.
        cluster.procs["peer-1"].stop()
        cluster.start("peer-1")
        assert cluster.health("peer-1")["quarantined"] == [ROGUE]
        assert cluster.metric("peer-1", "custody_signer_peer_quarantined", peer=ROGUE) == 1
        reply = RogueNode(cluster).sign("peer-1", withdrawal(cluster, vault))
        assert reply.ok and reply.attempts == 1 and sorted(reply.committee) == ["peer-1", "peer-3"], reply
    finally:
        cluster.set_faults(ROGUE, {"record_envelopes": True})
