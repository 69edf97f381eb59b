"""A rogue peer among five (3-of-5 signing, t=2): peer-3 equivocates — in signing round 1 the
last remote recipient of its broadcast gets other bytes (rogue.py). The echo check names it,
another quorum signs, and repeated aborts put it in quarantine.
"""

from __future__ import annotations

import os

import pytest

from mpc.wire import requests as rq
from node.ports import SigningDigest
from tests.functional.adversarial.harness import RogueNode
from tests.functional.cluster.conftest import make_cluster

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALL = ("peer-1", "peer-2", "peer-3", "peer-4", "peer-5")


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 5, 2, round_timeout_ms=8_000, rogues={"peer-3": {"equivocate_round": 1, "protocol": "sign"}})


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("treasury", ALL, 2)


def opaque_sign(cluster, vault):
    # Opaque digests: accepted only because these configs say environment = "test".
    return cluster.client().sign(vault, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))], coordinator="peer-1")


def test_an_equivocating_broadcast_aborts_naming_the_sender_then_another_quorum_signs(cluster, vault):
    body = rq.sign_request(vault.vault_id, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))])
    reply = RogueNode(cluster).sign("peer-1", body)
    assert reply.ok, reply.reason
    assert reply.attempts == 2 and list(reply.culprits) == ["peer-3"], (reply.attempts, reply.culprits, reply.reason)
    assert "equivocation" in reply.reason, reply.reason
    assert "peer-3" not in reply.committee
    assert "fault_equivocate" in cluster.stderr("peer-3")
    assert cluster.metric("peer-1", "custody_signer_aborts_total", protocol="sign", culprit="peer-3") >= 1


def test_a_peer_whose_sessions_keep_aborting_is_quarantined(cluster, vault):
    # Two more aborts naming peer-3 (three in all) put it in peer-1's quarantine ...
    for _ in range(2):
        assert len(opaque_sign(cluster, vault)) == 1
    assert cluster.health("peer-1")["quarantined"] == ["peer-3"]
    assert cluster.metric("peer-1", "custody_signer_peer_quarantined", peer="peer-3") == 1
    # ... so the next request goes straight to a quorum without it, first time.
    aborts = cluster.metric("peer-1", "custody_signer_aborts_total", culprit="peer-3")
    assert len(opaque_sign(cluster, vault)) == 1
    assert cluster.metric("peer-1", "custody_signer_aborts_total", culprit="peer-3") == aborts
