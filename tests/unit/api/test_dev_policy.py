"""The development risk policy of `custody dev up` (api/dev.py) and the signer peers' bands:
the node's quorum and every peer's quorum agree for each amount, or a withdrawal the node
sends to signing would be refused by the cluster (or one it holds would be signable)."""

from __future__ import annotations

import tomllib

import pytest
from nacl.signing import SigningKey

from api import dev
from mpc import cluster_cli
from mpc.signer.policy import Policy as SignerPolicy
from mpc.signer.policy import Refused
from node import risk

APPROVERS = {a: SigningKey.generate().verify_key.encode().hex() for a in ("approver-1", "approver-2")}


def node_policy() -> risk.Policy:
    return risk.Policy.parse(dev.dev_policy(APPROVERS, "hot"))


def signer_policy() -> SignerPolicy:
    node_pub = SigningKey.generate().verify_key.encode().hex()
    return SignerPolicy.from_dict(tomllib.loads(cluster_cli._policy(node_pub, APPROVERS) + dev.signer_auto_bands()))


@pytest.mark.parametrize("asset", ["BTC", "ETH"])
def test_node_and_signer_quorums_agree_on_every_band_edge(asset):
    node, signer = node_policy(), signer_policy()
    auto, unit = dev.DEV_AUTO_APPROVE[asset], dev.DEV_UNIT[asset]
    for amount, want in ((1, 0), (auto, 0), (auto + 1, 1), (unit, 1), (unit + 1, 2), (50 * unit, 2)):
        assert node.quorum("hot", asset, amount) == (want, 0), (asset, amount)
        assert signer.quorum(asset, amount, "hot") == want, (asset, amount)


def test_dev_policy_names_the_walkthrough_settings():
    p = node_policy()
    assert p.whitelist_required and p.whitelist_timelock_s == dev.DEV_WHITELIST_TIMELOCK_S > 0
    assert set(p.tiers) == {dev.DEV_KYC_TIER} and set(p.tiers[dev.DEV_KYC_TIER]) == {"BTC", "ETH"}
    assert p.approvers == {a: bytes.fromhex(k) for a, k in APPROVERS.items()}
    assert p.vaults["hot"].kind == "hot" and p.vaults["hot"].delay_s == 0


def test_above_the_top_band_is_refused_by_both():
    with pytest.raises(risk.ApprovalRefused, match="amount_exceeds_vault_policy"):
        node_policy().quorum("hot", "BTC", 50 * dev.DEV_UNIT["BTC"] + 1)
    with pytest.raises(Refused, match="amount_exceeds_policy"):
        signer_policy().quorum("BTC", 50 * dev.DEV_UNIT["BTC"] + 1, "hot")
