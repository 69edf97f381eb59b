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
