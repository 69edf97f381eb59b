"""A five-peer cluster: 3-of-5 signing (t=2), an equivocating peer named by the echo check and
then quarantined, and resharing a vault to a new committee that keeps the public key and signs.
"""

from __future__ import annotations

import os

import pytest

from mpc.signer import requests as rq
from mpc.signer.ceremonies import RecordKeys
from node.ports import SigningDigest
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALL = ("peer-1", "peer-2", "peer-3", "peer-4", "peer-5")


@pytest.fixture(scope="module")
def cluster(request):
    # Test fault on peer-3: in signing round 1 it sends the last recipient a broadcast whose
    # bytes differ (an unknown protobuf field: tss-lib reads the same message, hashes differ).
    yield from make_cluster(request, 5, 2, round_timeout_ms=8_000,
                            faults={"peer-3": {"equivocate_round": 1, "protocol": "sign"}})


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("treasury", ALL, 2)


def opaque_sign(cluster, vault):
    # Opaque digests: accepted only because these configs say environment = "test".
    return cluster.client().sign(vault, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))], coordinator="peer-1")


def test_keygen_3_of_5(cluster, vault):
    assert vault.threshold == 2 and len(vault.committee) == 5
    assert all(cluster.health(n)["vaults"] == 1 for n in ALL)


def test_an_equivocating_broadcast_aborts_naming_the_sender_then_another_quorum_signs(cluster, vault):
    from mpc.client import ClusterClient
    from mpc.proto import signer_pb2 as pb

    client = cluster.client()
    raw, sig = rq.sign_body(rq.sign_request(vault.vault_id, None, None, opaque_digests=[SigningDigest((0, 7), os.urandom(32))]),
                            cluster.node_key())
    stub = client._stub(*next((p["name"], p["address"], open(p["tls_cert"], "rb").read()) for p in cluster.info["peers"] if p["name"] == "peer-1"))
    reply = stub.Sign(pb.SignedRequest(request=raw, node_signature=sig), timeout=120)
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


def test_3_of_5_signs_a_bitcoin_withdrawal(cluster, vault):
    cluster.procs["peer-3"].stop()
    cluster.set_faults("peer-3", None)
    cluster.start("peer-3")
    keys = RecordKeys(vault.public_key, vault.chain_code)
    tx, intent = btc_withdrawal(keys, vault.vault_id)
    out = cluster.client().sign(vault, tx, intent, (rq.approve(intent, "approver-2", cluster.approver("approver-2")),),
                                coordinator="peer-2")
    assert len(out) == 1 and out[0][1].public_key == keys.child_public_key((0, 0))


def test_resharing_moves_a_vault_to_a_new_committee_that_signs(cluster):
    client = cluster.client()
    old = client.keygen("cold-1", ("peer-1", "peer-2", "peer-3"), 1)
    new = client.reshare(old, ("peer-3", "peer-4", "peer-5"), 1)
    assert new.public_key == old.public_key and new.chain_code == old.chain_code
    assert new.committee == ("peer-3:1", "peer-4:1", "peer-5:1")
    # The old shares are gone from the peers that left; the new ones are sealed on the new peers.
    for name in ("peer-1", "peer-2"):
        assert not (cluster.dir / name / "data" / "vaults" / "cold-1.sealed").exists()
    for name in ("peer-3", "peer-4", "peer-5"):
        assert (cluster.dir / name / "data" / "vaults" / "cold-1.sealed").exists()
    keys = RecordKeys(new.public_key, new.chain_code)
    tx, intent = btc_withdrawal(keys, new.vault_id)
    out = client.sign(new, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),), coordinator="peer-4")
    assert len(out) == 1
    # The old committee can no longer sign for it: peer-1 does not hold the vault any more.
    with pytest.raises(Exception) as e:
        client.sign(old, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),), coordinator="peer-1")
    assert "vault_unknown" in str(e.value)
