"""Hot/cold, all on chain: the rebalancer sweeps the hot excess to the cold vault (automatic);
below the low-water mark it proposes a cold -> hot refill, which the cold vault's quorum
approves (timed approvals), which waits out the cold delay (the node holds it; each peer
refuses to sign it earlier), and which the cluster then signs — every peer deriving the hot
vault's address itself from the public keys in its own policy. The refill is mined on regtest,
the hot wallet is refilled, and the books and the reconciliation report agree with the chain."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mpc.wire import requests as rq
from node.ports import SigningRefused
from node.rebalance import Rebalancer, reconciliation
from node.withdrawals import VAULT_WALLET_PATH, approval_message
from tests.functional.withdrawals.conftest import COLD_DELAY_S

pytestmark = pytest.mark.functional

MOVE_SATS = 5_000_000
REFILL_SATS = 2_000_000


def assert_eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def marks(hot: str, cold: str, high: int, target: int, low: int) -> str:
    return f"""[rebalance.BTC]
hot_vault = "{hot}"
cold_vault = "{cold}"
high_water = "{high}"
target = "{target}"
low_water = "{low}"
"""


def approve_timed(node, wid: str, approver: str, at_ms: int | None = None):
    """An approver signs the intent with their own clock's time (what the cold delay counts from)."""
    at_ms = rq.now_ms() if at_ms is None else at_ms
    intent = node.withdrawals.get(wid).intent
    sig = node.shared.approver_keys[approver].sign(approval_message(intent, "approve", at_ms)).signature
    return node.withdrawals.approve(wid, approver, sig, "approve", approved_at_ms=at_ms)


def refused(fn) -> SigningRefused:
    with pytest.raises(SigningRefused) as e:
        fn()
    return e.value


def test_rebalancing_moves_hot_excess_to_cold_and_a_refill_is_signed_after_quorum_and_delay(node):
    s = node.shared
    fee_reserve = node.withdrawals.policy().fee_max["bitcoin"]
    hot = node.chain_balance("BTC", "hot")
    cold_before = node.chain_balance("BTC", "cold")
    # The hot wallet is above its high-water mark by design of these marks.
    node.change_policy(rebalance=marks("hot", "cold", hot - 1, hot - MOVE_SATS - fee_reserve, 0))
    rb = Rebalancer(node.withdrawals, node.chain_balance, node.vault_address)
    [sweep] = rb.run_once()
    assert (sweep.kind, sweep.vault_id, sweep.amount) == ("rebalance", "hot", MOVE_SATS)
    assert sweep.destination == node.vault_address("cold", "BTC")
    assert (sweep.intent.kind, sweep.intent.own_destination_vault) == ("sweep", "cold"), "the peers derive the cold address"
    assert rb.run_once() == [], "never two rebalances of one asset in flight"
    done = node.drive(sweep.id, "completed")
    assert node.chain_balance("BTC", "cold") - cold_before == MOVE_SATS, "the cold vault received it on chain"
    hot_after = node.chain_balance("BTC", "hot")
    assert hot - hot_after == MOVE_SATS + done.fee_paid

    # Below the low-water mark: a refill from cold to the hot wallet is proposed.
    node.change_policy(rebalance=marks("hot", "cold", hot_after + 4 * REFILL_SATS, hot_after + REFILL_SATS, hot_after + 1))
    [refill] = rb.run_once()
    assert (refill.kind, refill.vault_id, refill.amount) == ("refill", "cold", REFILL_SATS)
    intent = refill.intent
    assert (intent.kind, intent.own_destination_vault, intent.own_destination_paths) == ("refill", "hot", (VAULT_WALLET_PATH,))
    assert refill.destination == node.vault_address("hot", "BTC")
    node.pipeline.run_once()
    assert_eq(node.withdrawals.get(refill.id).sub_status, "awaiting_approvals: 0 of 2", "waits for the cold quorum")

    node.clock.offset_ns = 0  # the node's clock at real time here: its delay is really waited out
    try:
        approve_timed(node, refill.id, "approver-1")
        queued = approve_timed(node, refill.id, "approver-2")
        assert_eq((queued.status, queued.sub_status), ("queued", f"approved: 2 of 2; cold delay {COLD_DELAY_S} s"), "quorum reached")
        # The node holds it until the delay ends...
        node.pipeline.run_once()
        assert_eq(node.withdrawals.get(refill.id).status, "queued", "not built before the cold delay")
        # ...and a node that skipped its own delay would still be refused by every peer.
        cold = s.vaults["cold"]
        utx = node.btc.build_withdrawal(intent)  # the pipeline's build later returns this same one (idempotent)
        approvals = node.withdrawals.signing_approvals(queued)
        assert all(a.approved_at_ms for a in approvals), approvals
        early = refused(lambda: s.client.sign(cold, utx, intent, approvals))
        assert early.reason.startswith("delay_not_elapsed"), early.reason
        assert time.time_ns() < queued.not_before_ns, "the refusal came before the delay ended"

        # After the delay: built, signed by the cluster, mined on regtest, completed once.
        cold_coins = node.chain_balance("BTC", "cold")
        hot_coins = node.chain_balance("BTC", "hot")
        filled = node.drive(refill.id, "completed")
        assert filled.updated_at_ns >= queued.not_before_ns
        assert_eq(node.shared.received_btc(refill.destination)[-1], (filled.txid, REFILL_SATS), "the hot wallet was paid on chain")
        assert_eq(node.chain_balance("BTC", "hot") - hot_coins, REFILL_SATS, "hot refilled")
        assert_eq(cold_coins - node.chain_balance("BTC", "cold"), REFILL_SATS + filled.fee_paid, "cold paid the refill and its fee")
    finally:
        node.clock.offset_ns = type(node.clock)().offset_ns

    # A refill naming a vault the peers do not list, or paying elsewhere than the hot vault's
    # address: refused by the peers (approvals valid and long past the delay, so only that is wrong).
    long_ago = rq.now_ms() - 3600_000
    stranger = dataclasses.replace(intent, own_destination_vault="vault-the-peers-do-not-know")
    sigs = tuple(rq.approve(stranger, a, k, long_ago) for a, k in s.approver_keys.items())
    unknown = refused(lambda: s.client.sign(cold, utx, stranger, sigs))
    assert unknown.reason.startswith("own_destination_vault_unknown"), unknown.reason
    elsewhere = dataclasses.replace(intent, intent_id=f"{intent.intent_id}-x", payments=(
        dataclasses.replace(intent.payments[0], destination=s.btc_destination()),))
    other_utx = node.btc.build_withdrawal(elsewhere)
    try:
        sigs = tuple(rq.approve(elsewhere, a, k, long_ago) for a, k in s.approver_keys.items())
        wrong = refused(lambda: s.client.sign(cold, other_utx, elsewhere, sigs))
        assert wrong.reason.startswith("transaction_does_not_match_intent: sweep_destination_not_ours"), wrong.reason
    finally:
        node.btc.release(elsewhere.intent_id)

    node.change_policy()
    [btc] = reconciliation(node.withdrawals, node.chain_balance, ["BTC"])
    assert btc["alert"] is False, btc
    assert btc["chain"] == btc["books"], btc
    assert int(btc["chain_by_vault"]["cold"]) == node.chain_balance("BTC", "cold")
    assert int(btc["chain_by_vault"]["hot"]) == node.chain_balance("BTC", "hot")
    node.check_ledger()
