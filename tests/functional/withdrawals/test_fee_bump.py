"""A stuck withdrawal is fee-bumped: its low-fee transaction sits unmined past the age, the
pipeline builds the replacement (bitcoin RBF), the real cluster signs it against the same
approved intent, the replacement is mined, and the withdrawal completes exactly once with the
mined version's fee booked. On SQLite and PostgreSQL, real btcd and signer processes."""

from __future__ import annotations

import pytest

from api.withdrawals_root import fee_of, replacement_of
from node.pipeline import Pipeline
from tests.functional.withdrawals.conftest import BTC, CONFIRMATIONS
from tests.support.procs import wait_until

pytestmark = pytest.mark.functional


def assert_eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def bumping_pipeline(node, stuck_age_s: float) -> Pipeline:
    return Pipeline(node.withdrawals, node.chains, node.shared.client, CONFIRMATIONS,
                    lambda chain, txid, wid: fee_of(node.chains[chain], txid, wid),
                    replacement_of=lambda chain, intent: replacement_of(node.chains[chain], intent), stuck_age_s=stuck_age_s)


def mined_fee_sats(node, txid: str, input_amounts: list[int]) -> int:
    """The fee of a mined transaction from the chain: its inputs (our recorded coins) minus the
    outputs btcd reports in the block that holds it."""
    btcd = node.shared.btcd
    for h in range(btcd.height(), 0, -1):
        block = btcd.call("getblock", btcd.call("getblockhash", h), 2)
        for t in block.get("rawtx") or block.get("tx"):
            if t["txid"] == txid:
                outs = sum(int(round(o["value"] * BTC)) for o in t["vout"])  # btcd reports BTC; test-side only
                return sum(input_amounts) - outs
    raise AssertionError(f"{txid} is in no block")


def test_btc_stuck_withdrawal_is_fee_bumped_and_completes_once(node):
    sub = node.customer(f"stuck-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = node.shared.btc_destination()
    node.whitelist(sub, "BTC", dest)
    amount = 3_000_000
    _, w = node.withdrawals.submit(sub, "stuck-1", "BTC", dest, amount, vault_id="hot", actor=f"client:{sub}")
    # Broadcast at the node fixture's low fallback fee rate, and no block mined: it is stuck.
    first = node.drive(w.id, "confirming", mine=False)
    assert_eq(first.txids, (first.txid,), "one version before any bump")
    assert_eq(node.btc.status(first.txid).state, "mempool", "the first version waits in the mempool")
    first_fee = fee_of(node.btc, first.txid, w.id)

    # Younger than the age: nothing is replaced.
    patient = bumping_pipeline(node, stuck_age_s=3600)
    patient.run_once()
    assert_eq(node.withdrawals.get(w.id).txids, (first.txid,), "not stuck yet")

    bumper = bumping_pipeline(node, stuck_age_s=1)

    def bumped():
        node.btc.scan()
        bumper.run_once()
        cur = node.withdrawals.get(w.id)
        return cur.status == "confirming" and len(cur.txids) == 2

    wait_until(bumped, 120, "a replacement built, signed by the cluster, recorded and broadcast")
    cur = node.withdrawals.get(w.id)
    assert_eq(cur.txids, (first.txid, cur.txid), "every version kept, the newest current")
    assert cur.txid != first.txid
    assert_eq(node.btc.status(cur.txid).state, "mempool", "the replacement is in the mempool")
    assert_eq(node.btc.status(first.txid).state, "unknown", "the first version was replaced (BIP125)")
    new_fee = fee_of(node.btc, cur.txid, w.id)
    assert first_fee < new_fee <= cur.fee_max, f"fee {first_fee} -> {new_fee} (fee_max {cur.fee_max})"

    node.shared.btcd.generate(1)
    done = node.drive(w.id, "completed")  # the fixture's pipeline: no bumping, only confirming
    assert_eq(done.txid, cur.txid, "completed with the mined version")
    assert_eq(node.shared.received_btc(dest), [(cur.txid, amount)], "exactly one transaction paid the destination")
    on_chain_fee = mined_fee_sats(node, cur.txid, [i.amount for i in cur.unsigned().inputs])
    assert_eq((done.fee_paid, new_fee), (on_chain_fee, on_chain_fee), "the fee booked is the mined transaction's fee")
    assert_eq(node.customers.available(sub, "BTC"), BTC - amount, "available after completion")
    node.check_ledger()
    # Completed is final: further passes of the bumping pipeline change nothing.
    bumper.run_once()
    assert_eq(node.withdrawals.get(w.id).updated_at_ns, done.updated_at_ns, "nothing after completion")


@pytest.fixture
def anvil_holds_transactions(node):
    """Anvil stops mining on its own (`evm_setAutomine false`): a broadcast transaction waits in
    its pool until the test mines a block — a stuck transaction. Restored afterwards."""
    anvil = node.shared.anvil
    anvil.call("evm_setAutomine", False)
    try:
        yield anvil
    finally:
        anvil.call("evm_setAutomine", True)


@pytest.mark.parametrize("asset", ["ETH", "token"])
def test_eth_stuck_withdrawal_is_replaced_with_the_same_nonce_and_completes_once(node, anvil_holds_transactions, asset):
    from web3.exceptions import TransactionNotFound

    s = node.shared
    asset = s.token_asset if asset == "token" else asset
    amount = 10**16 if asset == "ETH" else 7_000
    sub = node.customer(f"stuck-{asset[:5]}-{node.kind}")
    node.fund(sub, asset, 10 * amount)
    dest = s.eth_destination()
    node.whitelist(sub, asset, dest)
    _, w = node.withdrawals.submit(sub, f"stuck-{asset[:5]}", asset, dest, amount, vault_id="hot", actor=f"client:{sub}")
    first = node.drive(w.id, "confirming", mine=False)
    sent = s.w3.eth.get_transaction(first.txid)
    assert_eq(sent["blockNumber"], None, "the first version waits in the pool")
    sender = sent["from"]
    nonce_before = s.w3.eth.get_transaction_count(sender, "latest")
    assert_eq(sent["nonce"], nonce_before, "the first version uses the sender's next nonce")

    bumper = bumping_pipeline(node, stuck_age_s=1)

    def replaced():
        bumper.run_once()
        cur = node.withdrawals.get(w.id)
        return cur.status == "confirming" and len(cur.txids) == 2

    wait_until(replaced, 120, "a replacement with the same nonce built, signed by the cluster, recorded and broadcast")
    cur = node.withdrawals.get(w.id)
    assert_eq(cur.txids, (first.txid, cur.txid), "both versions kept, the newest current")
    again = s.w3.eth.get_transaction(cur.txid)
    assert_eq((again["nonce"], again["from"], again["to"], again["value"], again["input"]),
              (sent["nonce"], sent["from"], sent["to"], sent["value"], sent["input"]), "the same nonce and payment")
    assert again["maxFeePerGas"] > sent["maxFeePerGas"] and again["maxPriorityFeePerGas"] > sent["maxPriorityFeePerGas"], \
        "higher fee caps"
    assert again["gas"] * again["maxFeePerGas"] <= cur.fee_max, "within the approved fee_max"

    s.anvil.mine(1)
    done = node.drive(w.id, "completed")
    receipt = s.w3.eth.get_transaction_receipt(cur.txid)
    assert_eq((done.txid, receipt["status"]), (cur.txid, 1), "completed with the mined replacement")
    with pytest.raises(TransactionNotFound):
        s.w3.eth.get_transaction(first.txid)  # replaced in the pool: never mined
    assert_eq(s.w3.eth.get_transaction_count(sender, "latest"), nonce_before + 1, "one transaction of the sender mined")
    paid = s.w3.eth.get_balance(dest) if asset == "ETH" else s.token.functions.balanceOf(dest).call()
    assert_eq(paid, amount, "paid exactly once")
    fee = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    assert_eq(done.fee_paid, fee, "the fee booked is the mined replacement's")
    booked = node.ledger.lookup_transfers([f"{w.id}:fee"])[f"{w.id}:fee"]
    assert_eq((booked.amount, booked.ledger, booked.user_data), (fee, "ETH", cur.txid), "the ledger's fee transfer")
    assert_eq(node.customers.available(sub, asset), 9 * amount, "available after completion")
    node.check_ledger()
    bumper.run_once()
    assert_eq(node.withdrawals.get(w.id).updated_at_ns, done.updated_at_ns, "nothing after completion")
