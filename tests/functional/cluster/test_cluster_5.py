"""A five-peer cluster: 3-of-5 signing (t=2) and resharing a vault to a new committee that keeps
the public key and signs. An equivocating peer among five: tests/functional/adversarial/.
"""

from __future__ import annotations

import pytest

from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALL = ("peer-1", "peer-2", "peer-3", "peer-4", "peer-5")


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 5, 2, round_timeout_ms=8_000)


@pytest.fixture(scope="module")
def vault(cluster):
    return cluster.client().keygen("treasury", ALL, 2)


def test_keygen_3_of_5(cluster, vault):
    assert vault.threshold == 2 and len(vault.committee) == 5
    assert all(cluster.health(n)["vaults"] == 1 for n in ALL)


def test_3_of_5_signs_a_bitcoin_withdrawal(cluster, vault):
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


def test_resharing_to_a_committee_that_overlaps_the_old_one_completes(cluster):
    """Peers in both committees run two parties (generation g and g + 1); the peers only in the
    old one finish early and must still confirm the broadcasts they received (echo gate)."""
    client = cluster.client()
    old = client.keygen("warm-1", ("peer-1", "peer-2", "peer-3"), 1)
    new = client.reshare(old, ("peer-2", "peer-3", "peer-4"), 1, coordinator="peer-2")
    assert new.public_key == old.public_key and new.committee == ("peer-2:1", "peer-3:1", "peer-4:1")
    assert not (cluster.dir / "peer-1" / "data" / "vaults" / "warm-1.sealed").exists()
    keys = RecordKeys(new.public_key, new.chain_code)
    tx, intent = btc_withdrawal(keys, new.vault_id)
    out = client.sign(new, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),), coordinator="peer-4")
    assert len(out) == 1
