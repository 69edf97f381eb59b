"""Blame among five real signer processes (3-of-5 signing, t=2): peer-2 runs the test-only
RogueParticipant (rogue.py) and is every coordinator's first choice of co-signer but peer-2's
own. Each test uses its own coordinator, so one test's quarantine and conflicts do not steer
another's quorum. In each: the honest peers are never quarantined, the rogue is named with
evidence or isolated, and the four honest peers sign within the retry budget.
"""

from __future__ import annotations

import os

import pytest

from mpc.wire import requests as rq
from node import limits
from node.ports import SigningDigest
from tests.functional.adversarial.harness import RogueNode
from tests.functional.cluster.conftest import make_cluster

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALL = ("peer-1", "peer-2", "peer-3", "peer-4", "peer-5")
ROGUE = "peer-2"
HONEST = tuple(p for p in ALL if p != ROGUE)


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 5, 2, round_timeout_ms=8_000, rogues={ROGUE: {}})


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("treasury", ALL, 2)


def sign(cluster, vault, coordinator: str):
    body = rq.sign_request(vault.vault_id, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))])
    return RogueNode(cluster).sign(coordinator, body)


def sign_with_rogue_in_quorum(cluster, vault, coordinator: str, tries: int = 3):
    """The first reply whose first quorum held peer-2 (a coordinator rightly signs without a
    peer that missed its probe on a loaded machine)."""
    for _ in range(tries):
        reply = sign(cluster, vault, coordinator)
        assert reply.ok, reply.reason
        if reply.attempts > 1 or ROGUE in reply.committee:
            return reply
    raise AssertionError(f"{coordinator} never chose {ROGUE} in {tries} requests, though it was up")


def assert_no_honest_peer_blamed(cluster):
    for p in HONEST:
        h = cluster.health(p)
        assert set(h["quarantined"]) <= {ROGUE}, (p, h)
        assert all(ROGUE in pair for pair in h["conflicts"]), (p, h)  # no pair of two honest peers
        for q in HONEST:
            assert cluster.metric(p, "custody_signer_peer_quarantined", peer=q) == 0


def test_bogus_echoes_name_the_echoer_with_evidence(cluster, vault):
    """peer-2 echoes other hashes than the broadcasts it got: the headers it echoes are not
    signed by their senders, so its own signed echoes prove it lied (the honest senders, whom
    the old echo check named, are not blamed)."""
    cluster.set_faults(ROGUE, {"bogus_echo": True, "protocol": "sign"})
    reply = sign_with_rogue_in_quorum(cluster, vault, "peer-1")
    assert reply.attempts == 2 and list(reply.culprits) == [ROGUE], (reply.attempts, reply.culprits, reply.reason)
    assert "forged_echo" in reply.reason and ROGUE not in reply.committee, reply.reason
    assert "fault_bogus_echo" in cluster.stderr(ROGUE)
    assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit=ROGUE) >= 1
    assert_no_honest_peer_blamed(cluster)


def test_a_peer_that_stalls_after_round_1_is_named_by_the_coordinators_own_deadline(cluster, vault):
    """peer-2 sends round 1, then nothing (as if hung): peer-1's own round deadline names it (its
    second proof at peer-1, after the bogus echoes), and peer-1 signs with two honest peers."""
    cluster.set_faults(ROGUE, {"hold_at_round": 2, "protocol": "sign"})
    try:
        reply = sign_with_rogue_in_quorum(cluster, vault, "peer-1")
        assert reply.attempts == 2 and list(reply.culprits) == [ROGUE], (reply.attempts, reply.culprits, reply.reason)
        assert "round_timeout" in reply.reason and ROGUE not in reply.committee, reply.reason
        assert "fault_hold" in cluster.stderr(ROGUE)
        assert_no_honest_peer_blamed(cluster)
    finally:
        cluster.set_faults(ROGUE, {})


def test_malformed_messages_isolate_their_sender(cluster, vault):
    """peer-2's round-1 messages are bytes tss-lib cannot read. GG18 names the sender to each
    recipient, which no one else can check: the pairs are kept apart, so the coordinator's next
    quorums leave peer-2 out."""
    cluster.set_faults(ROGUE, {"malformed_round": 1, "protocol": "sign"})
    reply = sign_with_rogue_in_quorum(cluster, vault, "peer-3")
    assert reply.attempts == 2 and ROGUE not in reply.committee, (reply.attempts, reply.committee, reply.reason)
    assert "fault_malformed" in cluster.stderr(ROGUE)
    conflicts = cluster.health("peer-3")["conflicts"]
    assert conflicts and all(ROGUE in pair for pair in conflicts), conflicts
    again = sign(cluster, vault, "peer-3")
    assert again.ok and again.attempts == 1 and ROGUE not in again.committee, again
    assert_no_honest_peer_blamed(cluster)


def test_an_unproven_accusation_of_a_peer_in_the_session_keeps_the_pair_apart(cluster, vault):
    """peer-2 accuses peer-1 (both in the session): nobody can prove either way, so peer-4 keeps
    the two out of one quorum, alerts, and signs with peers in no conflict; peer-1 is not
    quarantined, and peer-2 is left out from then on."""
    cluster.set_faults(ROGUE, {"accuse": "peer-1", "protocol": "sign"})
    alerts = cluster.metric("peer-4", "custody_signer_blame_alerts_total", kind="conflict")
    reply = sign_with_rogue_in_quorum(cluster, vault, "peer-4")
    assert reply.attempts == 2 and list(reply.culprits) == [], (reply.attempts, reply.culprits, reply.reason)
    assert ROGUE not in reply.committee, reply.committee
    h = cluster.health("peer-4")
    assert (h["quarantined"], h["conflicts"]) == ([], [["peer-1", "peer-2"]]), h
    assert cluster.metric("peer-4", "custody_signer_blame_alerts_total", kind="conflict") == alerts + 1
    assert cluster.metric("peer-4", "custody_signer_peer_conflict", peer_a="peer-1", peer_b="peer-2") == 1
    again = sign(cluster, vault, "peer-4")
    assert again.ok and again.attempts == 1 and ROGUE not in again.committee, again
    assert_no_honest_peer_blamed(cluster)


def test_a_rogue_that_combines_equivocation_bogus_echoes_and_accusations(cluster, vault):
    cluster.set_faults(ROGUE, {"equivocate_round": 1, "bogus_echo": True, "protocol": "sign"})
    reply = sign_with_rogue_in_quorum(cluster, vault, "peer-5")
    assert reply.attempts == 2 and list(reply.culprits) == [ROGUE], (reply.attempts, reply.culprits, reply.reason)
    assert "forged_echo" in reply.reason or "equivocation" in reply.reason, reply.reason
    # ... and now also accuses peer-3, outside the session: a lie on its face, proof against it.
    cluster.set_faults(ROGUE, {"equivocate_round": 1, "bogus_echo": True, "accuse": "peer-3", "protocol": "sign"})
    for _ in range(limits.CLUSTER_QUARANTINE_ABORTS):
        reply = sign(cluster, vault, "peer-5")
        assert reply.ok and ROGUE not in reply.committee and "peer-3" not in reply.culprits, reply
        if cluster.health("peer-5")["quarantined"]:
            break
    assert cluster.health("peer-5")["quarantined"] == [ROGUE]
    again = sign(cluster, vault, "peer-5")
    assert again.ok and again.attempts == 1 and ROGUE not in again.committee, again
    assert_no_honest_peer_blamed(cluster)
