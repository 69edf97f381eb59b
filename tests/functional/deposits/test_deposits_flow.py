"""Customer deposits end to end, on real btcd and Anvil with the real signer cluster, the node
on SQLite and on PostgreSQL, through the production composition root (`World`):

- a BTC deposit to an issued address is pending at one confirmation, credited at the depth,
  with webhook outbox rows; a reorg before the depth voids it (and the re-mined copy is a new
  epoch, credited once);
- the real `custody withdrawals worker` process sweeps the credited BTC deposit addresses to the
  hot wallet on chain; the reconciliation report then shows no difference, books = chain;
- ETH and ERC-20 deposits are credited, and swept: the token address first gets gas from the
  gas station (the hot wallet), then its tokens move; reconciliation again agrees to the unit.

The ledger invariant checker runs after each story."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from api.withdrawals_root import World, load_config
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED
from node.store.api_models import webhook_events
from node.withdrawals import VAULT_WALLET_PATH
from tests.functional.deposits.conftest import BTC_DEPOSIT_CONFIRMATIONS
from tests.support.procs import tail, wait_until

pytestmark = pytest.mark.functional


def balance(dw, sub: str, asset: str) -> tuple[int, int]:
    """(posted, pending credits) of the customer's account."""
    from node.clients import ClientOps

    for b in ClientOps(dw.node.store).balances(sub):
        if b.asset == asset:
            return b.posted, b.pending_in
    return 0, 0


def events_of(dw, deposit_id: str) -> list[str]:
    with dw.node.store.reading() as conn:
        rows = conn.execute(sa.select(webhook_events.c.type, webhook_events.c.payload)
                            .order_by(webhook_events.c.seq)).all()
    return [r.type for r in rows if json.loads(r.payload)["data"]["id"] == deposit_id]


def assert_eq(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def test_btc_deposit_is_pending_then_credited_at_depth(dw):
    s = dw.shared
    sub = dw.node.customer(f"alice-{dw.node.kind}")
    a = dw.deposits.issue_address(sub, "BTC", client_id="cl_alice", actor=f"client:{sub}")
    assert a.path[0] == 0 and a.vault_id == "hot"
    txid = s.faucet_pays(a.address, 2_000_000)  # mined: one confirmation
    dw.world.scan()  # ... and the process dies before crediting: a new one reads the stored deposits
    restarted = World(load_config(dw.config))
    try:
        assert restarted.sync_deposits() == 1
    finally:
        restarted.close()
    [dep] = dw.deposits.list(sub)
    assert_eq((dep.txid, dep.status, dep.amount), (txid, DEPOSIT_PENDING, 2_000_000), "first sight")
    assert_eq(balance(dw, sub, "BTC"), (0, 2_000_000), "pending credit, not spendable")
    s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS - 1)
    dw.sync()
    dep = dw.deposits.get(dep.id)
    assert_eq(dep.status, DEPOSIT_CREDITED, "at the depth")
    assert_eq(balance(dw, sub, "BTC"), (2_000_000, 0), "posted")
    assert_eq(events_of(dw, dep.id), ["deposit.pending", "deposit.credited"], "outbox")
    dw.sync()
    assert_eq(events_of(dw, dep.id), ["deposit.pending", "deposit.credited"], "a second sync books nothing")
    dw.check_ledger()


def test_btc_reorg_before_depth_voids_the_pending_credit(dw):
    s = dw.shared
    sub = dw.node.customer(f"bob-{dw.node.kind}")
    a = dw.deposits.issue_address(sub, "BTC", actor=f"client:{sub}")
    txid = s.faucet_pays(a.address, 3_000_000)
    block_hash = s.btcd.call("getbestblockhash")
    dw.sync()
    [first] = dw.deposits.list(sub)
    assert_eq((first.status, first.block_hash), (DEPOSIT_PENDING, block_hash), "pending in the block we orphan")
    s.btcd.call("invalidateblock", block_hash)
    wait_until(lambda: txid in s.btcd.mempool(), 10, "the deposit is back in btcd's mempool")
    s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS)  # the new branch is longer and mines it again
    dw.sync()
    deps = dw.deposits.list(sub)
    assert_eq([(d.epoch, d.status) for d in deps], [(1, DEPOSIT_VOIDED), (2, DEPOSIT_CREDITED)], "voided, then re-mined")
    assert_eq(events_of(dw, first.id), ["deposit.pending", "deposit.voided"], "outbox of the orphaned copy")
    assert_eq(balance(dw, sub, "BTC"), (3_000_000, 0), "credited exactly once")
    s.faucet.scan()
    dw.check_ledger()


def test_worker_process_sweeps_btc_deposit_addresses_to_hot_and_books_agree_with_chain(dw):
    s = dw.shared
    sub = dw.node.customer(f"carol-{dw.node.kind}")
    issued = dw.cli("issue-address", sub, "BTC", "--actor", f"client:{sub}")
    a = dw.deposits.get_address(json.loads(issued)["id"])
    assert_eq((a.sub_account_id, a.address), (sub, json.loads(issued)["address"]), "issued through the CLI")
    s.faucet_pays(a.address, 4_000_000)
    dw.house_float("BTC", 1_000_000)
    hot = dw.world.vault_address("hot", "BTC")
    worker = dw.worker(f"worker-{dw.node.kind}")
    try:
        def swept():
            assert worker.alive(), f"worker died:\n{tail(worker.stderr_path)}"
            dw.mine_while_confirming()
            sweeps = dw.sweeps()
            unswept = [d for d in dw.deposits.list(sub) if d.status == DEPOSIT_CREDITED and d.swept_by is None]
            return sweeps and not unswept and all(w.status == "completed" for w in sweeps if w.chain == "bitcoin")

        s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS)
        wait_until(swept, 120, "the worker credits and sweeps every BTC deposit address")
    finally:
        worker.stop()
    btc_sweeps = [w for w in dw.sweeps() if w.chain == "bitcoin"]
    assert {w.destination for w in btc_sweeps} == {hot}, "every sweep paid our hot wallet"
    assert all(w.intent.own_destination_paths == (VAULT_WALLET_PATH,) for w in btc_sweeps)
    dw.world.scan()
    with dw.world.chains["bitcoin"].state.begin() as st:
        left = [u for u in st.unspent_utxos("hot") if u.path[:1] == (0,) and u.address == a.address]
    assert_eq(left, [], "nothing left at the deposit address")
    assert_eq(balance(dw, sub, "BTC"), (4_000_000, 0), "the customer keeps the credit: a sweep is our own movement")
    [listed] = [json.loads(line) for line in dw.cli("deposits", sub).splitlines()]
    assert_eq((listed["status"], listed["amount"], listed["address"]), (DEPOSIT_CREDITED, "4000000", a.address), "CLI listing")
    [btc] = dw.reconcile(["BTC"]).values()
    assert btc["alert"] is False, btc
    assert_eq(btc["chain"], btc["books"], "books = chain after the sweeps")
    fees = sum(w.fee_paid for w in btc_sweeps)
    assert fees > 0
    assert_eq(int(btc["chain"]) - int(btc["liabilities"]), 1_000_000 - fees, "the house float paid the sweep fees")
    dw.check_ledger()


def test_eth_and_token_deposits_are_credited_and_swept_with_a_gas_topup(dw):
    s = dw.shared
    node = dw.node
    station = dw.world.vault_address("hot", "ETH")
    # The two databases' nodes share the hot vault, so its wallet address on Anvil may hold what
    # the other node left there: this node books that as the house's own money first.
    for asset, held in (("ETH", s.w3.eth.get_balance(station)), (s.token_asset, s.token.functions.balanceOf(station).call())):
        if held:
            node._book_deposit(None, asset, held, f"adopted-{asset}-{node.kind}")
    # The gas station: the hot wallet holds the house's ETH float (booked to fee revenue).
    dw.house_float("ETH", 10**17)
    sub = node.customer(f"dave-{node.kind}")
    a = dw.deposits.issue_address(sub, s.token_asset, client_id="cl_dave", actor=f"client:{sub}")
    assert a.family == "ETH"
    assert dw.deposits.issue_address(sub, "ETH", actor=f"client:{sub}").address != a.address, "fresh each time"
    eth_amount, token_amount = 3 * 10**16, 500_000_000
    s.w3.eth.wait_for_transaction_receipt(s.w3.eth.send_transaction({"from": s.payer, "to": a.address, "value": eth_amount}), timeout=10)
    s.w3.eth.wait_for_transaction_receipt(s.token.functions.transfer(a.address, token_amount).transact({"from": s.payer}), timeout=10)
    dw.sync()
    assert_eq(sorted((d.asset, d.status, d.amount) for d in dw.deposits.list(sub)),
              sorted([("ETH", DEPOSIT_CREDITED, eth_amount), (s.token_asset, DEPOSIT_CREDITED, token_amount)]), "credited")
    assert_eq(balance(dw, sub, "ETH"), (eth_amount, 0), "ETH posted")
    assert_eq(balance(dw, sub, s.token_asset), (token_amount, 0), "token posted")
    token_before = s.token.functions.balanceOf(station).call()

    def all_swept():
        unswept = [d for d in dw.deposits.list(sub) if d.swept_by is None]
        sweeps = [w for w in dw.sweeps() if w.chain == "ethereum"]
        return not unswept and all(w.status == "completed" for w in sweeps)

    dw.drive_sweeps(all_swept, 150, "ETH and token deposits swept (the token after its gas top-up)")
    sweeps = [w for w in dw.sweeps() if w.chain == "ethereum"]
    kinds = [(w.asset, w.destination == station) for w in sweeps]
    assert ("ETH", False) in kinds, f"a gas top-up from the station to the deposit address: {kinds}"
    assert (s.token_asset, True) in kinds and ("ETH", True) in kinds, kinds
    topup = next(w for w in sweeps if w.destination == a.address)
    token_sweep = next(w for w in sweeps if w.asset == s.token_asset)
    assert topup.updated_at_ns < token_sweep.created_at_ns, "the token sweep waited for its gas"
    assert_eq(s.token.functions.balanceOf(a.address).call(), 0, "no tokens left at the deposit address")
    assert_eq(s.token.functions.balanceOf(station).call() - token_before, token_amount, "the hot wallet got them")
    # A gas top-up paid the deposit address: our own movement, never a customer credit.
    assert_eq(sorted(d.asset for d in dw.deposits.list(sub)), sorted(["ETH", s.token_asset]), "no new deposit")
    report = dw.reconcile(["ETH", s.token_asset])
    for asset, row in report.items():
        assert row["alert"] is False, row
        assert_eq(row["chain"], row["books"], f"{asset}: books = chain")
    dw.check_ledger()


def test_btc_reorg_after_credit_is_flagged_for_staff_and_shown_in_the_reconciliation(dw):
    """Runs last in the module: it leaves btcd on a new branch."""
    s = dw.shared
    sub = dw.node.customer(f"erin-{dw.node.kind}")
    a = dw.deposits.issue_address(sub, "BTC", client_id="cl_erin", actor=f"client:{sub}")
    txid = s.faucet_pays(a.address, 1_500_000)
    block_hash = s.btcd.call("getbestblockhash")
    s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS - 1)
    dw.sync()
    [dep] = dw.deposits.list(sub)
    assert_eq(dep.status, DEPOSIT_CREDITED, "credited at depth")
    s.btcd.call("invalidateblock", block_hash)
    wait_until(lambda: txid in s.btcd.mempool(), 10, "the deposit is back in btcd's mempool")
    s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS + 1)  # a longer branch (it mines the deposit again)
    dw.sync()
    dep = dw.deposits.get(dep.id)
    assert_eq((dep.status, dep.review), (DEPOSIT_REORGED_AFTER_CREDIT, "reversal_needed"), "flagged, not debited")
    assert_eq(balance(dw, sub, "BTC"), (1_500_000, 0), "the customer is never debited silently")
    assert_eq(events_of(dw, dep.id), ["deposit.pending", "deposit.credited", "deposit.reorged"], "outbox")
    [btc] = dw.reconcile(["BTC"]).values()
    assert btc["alert"] is True and btc["deposits_reversal_needed"] == "1500000", btc
    assert any(x.startswith("deposits_reorged_after_credit") for x in btc["alerts"]), btc
    flagged = [json.loads(line)["id"] for line in dw.cli("deposit-review").splitlines()]
    assert_eq(flagged, [dep.id], "staff's queue")
    # The same transaction was mined again on the new branch: staff keep the credit.
    dw.cli("deposit-review", dep.id, "keep", "--actor", "staff:ops")
    [btc] = dw.reconcile(["BTC"]).values()
    assert btc["alert"] is False and btc["chain"] == btc["books"], btc
    s.faucet.scan()
    dw.check_ledger()


def test_a_customer_withdrawal_may_spend_an_unswept_deposit_and_books_still_agree(dw):
    """Deposit addresses are the hot vault's children: a bitcoin withdrawal may select their
    coins before any sweep. It completes (the vault wallet books what they hold) and the ledger
    checker passes. Uses the tests' own pipeline (node.pipeline, with its own chain state and
    the screening clock past the whitelist time-lock), so it runs after the reconciliations."""
    s, node = dw.shared, dw.node
    sub = node.customer(f"frank-{node.kind}")
    a = dw.deposits.issue_address(sub, "BTC", actor=f"client:{sub}")
    node.btc.address("hot", a.path)  # the pipeline's adapter watches it too
    node.btc.scan()
    deposit_txid = s.faucet_pays(a.address, 2_500_000)
    s.btcd.generate(BTC_DEPOSIT_CONFIRMATIONS - 1)
    dw.sync()
    assert_eq(balance(dw, sub, "BTC"), (2_500_000, 0), "credited")
    node.btc.scan()
    spendable = [u for u in node.btc.state.read().unspent_utxos("hot")]
    assert_eq([u.txid for u in spendable], [deposit_txid], "the vault's only coin is the unswept deposit")
    dest = s.btc_destination()
    node.whitelist(sub, "BTC", dest)
    _, w = node.withdrawals.submit(sub, f"frank-{node.kind}-1", "BTC", dest, 1_000_000, vault_id="hot", actor=f"client:{sub}")
    done = node.drive(w.id, "completed")
    spent = {vin["txid"] for vin in s.btcd.call("getrawtransaction", done.txid, 1)["vin"]}
    assert_eq(spent, {deposit_txid}, "the withdrawal spent the deposit address's coin")
    assert_eq(balance(dw, sub, "BTC"), (1_500_000, 0), "customer debited by the withdrawal only")
    dw.check_ledger()
