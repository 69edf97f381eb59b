"""Hot/cold: the rebalancer sweeps the hot excess to the cold vault on chain (automatic), and
proposes a cold -> hot refill that waits for the cold vault's quorum; the reconciliation report
then agrees with the chain to the satoshi."""

from __future__ import annotations

import pytest

from node.rebalance import Rebalancer, reconciliation

pytestmark = pytest.mark.functional

MOVE_SATS = 5_000_000


def marks(hot: str, cold: str, high: int, target: int, low: int) -> str:
    return f"""[rebalance.BTC]
hot_vault = "{hot}"
cold_vault = "{cold}"
high_water = "{high}"
target = "{target}"
low_water = "{low}"
"""


def test_rebalancing_moves_hot_excess_to_cold_on_chain_and_proposes_refills(node):
    fee_reserve = node.withdrawals.policy().fee_max["bitcoin"]
    hot = node.chain_balance("BTC", "hot")
    cold_before = node.chain_balance("BTC", "cold")
    # The hot wallet is above its high-water mark by design of these marks.
    node.change_policy(rebalance=marks("hot", "cold", hot - 1, hot - MOVE_SATS - fee_reserve, 0))
    rb = Rebalancer(node.withdrawals, node.chain_balance, node.vault_address)
    [sweep] = rb.run_once()
    assert (sweep.kind, sweep.vault_id, sweep.amount) == ("rebalance", "hot", MOVE_SATS)
    assert sweep.destination == node.vault_address("cold", "BTC")
    assert rb.run_once() == [], "never two rebalances of one asset in flight"
    done = node.drive(sweep.id, "completed")
    assert node.chain_balance("BTC", "cold") - cold_before == MOVE_SATS, "the cold vault received it on chain"
    hot_after = node.chain_balance("BTC", "hot")
    assert hot - hot_after == MOVE_SATS + done.fee_paid
    # Below the low-water mark: a refill from cold is proposed and waits for the cold quorum.
    node.change_policy(rebalance=marks("hot", "cold", hot_after + 2, hot_after + 1, hot_after + 1))
    [refill] = rb.run_once()
    assert (refill.kind, refill.vault_id, refill.amount) == ("refill", "cold", 1)
    node.pipeline.run_once()
    refill = node.withdrawals.get(refill.id)
    assert (refill.status, refill.sub_status) == ("pending_approval", "awaiting_approvals: 0 of 2"), refill
    node.withdrawals.cancel(refill.id, actor="staff:treasury")
    node.change_policy()
    [btc] = reconciliation(node.withdrawals, node.chain_balance, ["BTC"])
    assert btc["alert"] is False, btc
    assert btc["chain"] == btc["books"], btc
    assert int(btc["chain_by_vault"]["cold"]) == node.chain_balance("BTC", "cold")
    node.check_ledger()
