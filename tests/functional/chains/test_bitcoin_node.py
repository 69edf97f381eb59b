"""The Bitcoin adapter against a real btcd in regtest (one node for this module).

Signatures come from a plain test key (tests/support/test_signer.py), standing in for the MPC
cluster, and only here. The story runs in order: the faucet (an outside wallet the node mines
to) pays our deposit addresses; the scanner reports the deposits and the node's crediting
(node/deposits/) takes them pending -> credited; reorgs void or flag them; we
withdraw (with change, batched), bump a stuck withdrawal's fee, sweep deposits, and the intent
check refuses a transaction that does not match its intent.
"""

from __future__ import annotations

import dataclasses

import pytest

from chains.bitcoin import tx as btx
from chains.errors import ChainError
from node.ports import (
    DEPOSIT_CREDITED,
    DEPOSIT_PENDING,
    DEPOSIT_REORGED_AFTER_CREDIT,
    DEPOSIT_VOIDED,
    OBSERVED_ROLLBACK,
    OBSERVED_SEEN,
    TX_CONFIRMED,
    TX_MEMPOOL,
    TX_UNKNOWN,
    ChainAdapter,
    IntentMismatch,
    Payment,
    UnsignedTransaction,
    WithdrawalIntent,
)
from tests.functional.chains.conftest import BTC_CONFIRMATIONS
from tests.support.procs import wait_until

pytestmark = pytest.mark.functional

FEE_MAX_SATS = 100_000


def intent(intent_id, payments, vault="ours", **kw) -> WithdrawalIntent:
    fields = dict(
        intent_id=intent_id,
        vault_id=vault,
        chain="bitcoin",
        network="regtest",
        asset="BTC",
        payments=tuple(Payment(a, n) for a, n in payments),
        fee_max=FEE_MAX_SATS,
    )
    return WithdrawalIntent(**{**fields, **kw})


def send(btc, adapter, signer, it, **kw) -> str:
    utx = adapter.build_withdrawal(it, **kw)
    digests = adapter.digests(utx, it)
    signed = adapter.attach_signatures(utx, signer.sign(digests), it)
    return adapter.broadcast(signed)


def faucet_pays(btc, address: str, amount: int, label: str) -> str:
    btc.faucet.scan()
    txid = send(btc, btc.faucet, btc.faucet_signer, intent(label, [(address, amount)], vault="faucet"))
    wait_until(lambda: txid in btc.node.mempool(), 10, f"{txid} in btcd's mempool")
    return txid


def seen_of(result):
    return [o for o in result.events if o.kind == OBSERVED_SEEN]


def assert_eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


@pytest.fixture(scope="module")
def funded(btc):
    """Mines 101+ blocks once: the faucet's first coinbases mature."""
    btc.node.generate(110)
    btc.faucet.scan()
    btc.ours.scan()
    assert btc.faucet.balance("faucet") > 0
    return btc


def test_deposit_pending_at_one_confirmation_then_credited_at_depth(funded, btc_books):
    btc, books = funded, btc_books
    address = books.issue("BTC")
    txid = faucet_pays(btc, address, 250_000_000, "faucet-1")
    btc.node.generate(1)
    first = btc.ours.scan()
    assert_eq([(o.txid, o.amount, o.address) for o in seen_of(first)], [(txid, 250_000_000, address)], "observed")
    r = books.sync()
    assert_eq((r.pending, r.credited), (1, 0), "booked at 1 confirmation")
    assert_eq(books.of(txid), [(DEPOSIT_PENDING, 1, 250_000_000, address)], "pending")
    btc.node.generate(BTC_CONFIRMATIONS - 2)
    assert_eq(btc.ours.scan().events, (), "the scanner reports no depth")
    assert_eq(books.sync().credited, 0, f"credited at {BTC_CONFIRMATIONS - 1} confirmations")
    btc.node.generate(1)
    btc.ours.scan()
    assert_eq(books.sync().credited, 1, "credited at depth, in the first pass after it")
    assert_eq(books.of(txid), [(DEPOSIT_CREDITED, 1, 250_000_000, address)], "credited")
    # Exactly once: scanning and syncing again books nothing.
    assert_eq(btc.ours.scan().events, (), "events of a scan with no new blocks")
    assert_eq(books.sync().total, 0, "a pass with nothing new")
    # A second deposit for the withdrawals below.
    faucet_pays(btc, books.issue("BTC"), 150_000_000, "faucet-2")
    btc.node.generate(BTC_CONFIRMATIONS)
    btc.ours.scan()
    assert_eq(books.sync().credited, 1, "second deposit credited")


def test_a_restarted_adapter_sees_each_deposit_exactly_once(funded, btc_books):
    btc, books = funded, btc_books
    btc.ours.scan()
    books.sync()
    restarted = btc.adapter("ours", btc.signer)  # a new process on the same database
    assert_eq(restarted.scan().events, (), "events after a restart with nothing new")
    address = books.issue("BTC")
    txid = faucet_pays(btc, address, 3_000_000, "faucet-restart")
    btc.node.generate(1)
    assert_eq([o.txid for o in seen_of(restarted.scan())], [txid], "observed once")
    # The old instance, still running, reads the same state: nothing is reported twice.
    assert_eq(seen_of(btc.ours.scan()), [], "observed again by the other instance")
    assert_eq(books.sync(restarted).pending, 1, "booked once")
    assert_eq(books.sync(btc.ours).total, 0, "and not again through the other instance")


def test_reorg_before_depth_voids_the_deposit(funded, btc_books):
    btc, books = funded, btc_books
    address = books.issue("BTC")
    txid = faucet_pays(btc, address, 10_000_000, "faucet-reorg-1")
    (block_hash,) = btc.node.generate(1)
    assert_eq([o.txid for o in seen_of(btc.ours.scan())], [txid], "observed")
    assert_eq(books.sync().pending, 1, "pending")
    height = btc.node.call("getblock", block_hash)["height"]
    btc.node.call("invalidateblock", block_hash)
    # btcd puts the transactions of a disconnected block back in its mempool.
    wait_until(lambda: txid in btc.node.mempool(), 10, "the deposit is back in btcd's mempool")
    btc.node.generate(2)  # the other branch is now longer
    result = btc.ours.scan()
    assert_eq(result.rolled_back_to, height - 1, "fork height")
    assert_eq([(o.kind, o.height) for o in result.events if o.kind == OBSERVED_ROLLBACK], [(OBSERVED_ROLLBACK, height - 1)],
              "the rollback reported")
    r = books.sync()
    assert_eq((r.voided, r.pending), (1, 1), "voided, and booked again")
    # btcd puts the transactions of an invalidated block back in its mempool, so the new
    # branch mines it again: the same deposit comes back as a new pending one, epoch 2.
    assert_eq([(s, e) for s, e, _, _ in books.of(txid)], [(DEPOSIT_VOIDED, 1), (DEPOSIT_PENDING, 2)],
              "mined again on the new branch")
    btc.faucet.scan()  # the faucet's view rolls back too


def test_reorg_after_depth_is_flagged(funded, btc_books):
    btc, books = funded, btc_books
    address = books.issue("BTC")
    txid = faucet_pays(btc, address, 20_000_000, "faucet-reorg-2")
    (block_hash, *_) = btc.node.generate(BTC_CONFIRMATIONS)
    btc.ours.scan()
    books.sync()
    assert_eq(books.of(txid)[-1][0], DEPOSIT_CREDITED, "credited before the reorg")
    btc.node.call("invalidateblock", block_hash)
    btc.node.generate(BTC_CONFIRMATIONS + 1)
    btc.ours.scan()
    assert_eq(books.sync().flagged, 1, "flagged")
    assert_eq([s for s, *_ in books.of(txid)], [DEPOSIT_REORGED_AFTER_CREDIT], "flagged for staff, never re-credited")
    assert_eq(books.sync().total, 0, "once")
    btc.faucet.scan()


def test_withdrawal_with_change_is_accepted_and_mined(funded):
    btc = funded
    btc.ours.scan()
    before = btc.ours.balance("ours")
    dest = btc.faucet.address("faucet", (1, 7))
    it = intent("w-change", [(dest, 30_000_000)])
    utx = btc.ours.build_withdrawal(it)
    assert utx.change_paths, "a withdrawal smaller than its input has change"
    txid = btx.txid_of(utx.payload)
    # Idempotent per intent: building again returns the same transaction.
    assert_eq(btc.ours.build_withdrawal(it).payload, utx.payload, "rebuild")
    signed = btc.ours.attach_signatures(utx, btc.signer.sign(btc.ours.digests(utx, it)), it)
    assert_eq(btc.ours.broadcast(signed), txid, "txid")
    assert_eq(btc.ours.status(txid).state, TX_MEMPOOL, "status before mining")
    btc.node.generate(1)
    status = btc.ours.status(txid)
    assert_eq((status.state, status.confirmations), (TX_CONFIRMED, 1), "status after mining")
    btc.ours.scan()
    fee = before - 30_000_000 - btc.ours.balance("ours")
    assert 0 < fee <= FEE_MAX_SATS, f"fee {fee}"
    mined = btc.node.call("getrawtransaction", txid, 1)
    assert_eq(len(mined["vout"]), 2, "payment + change outputs")
    # After the fact: the id cannot be reused for another payment, the mined transaction
    # cannot be bumped, and its coins cannot be released.
    refusals = [
        ("intent_id_reused_with_different_fields", lambda: btc.ours.build_withdrawal(intent("w-change", [(dest, 30_000_001)]))),
        ("already_confirmed", lambda: btc.ours.bump_fee(it, 10)),
        ("already_signed", lambda: btc.ours.release(it.intent_id)),
    ]
    for reason, call in refusals:
        with pytest.raises(ChainError) as exc:
            call()
        assert_eq(exc.value.reason, reason, "refusal")
    assert_eq(btc.ours.signed_of(it.intent_id).txid, txid, "signed transaction kept for rebroadcast")


def test_batched_withdrawal_pays_everyone_in_one_transaction(funded):
    btc = funded
    btc.ours.scan()
    dests = [btc.faucet.address("faucet", (1, 100 + i)) for i in range(3)]
    it = intent("w-batch", [(d, 1_000_000 * (i + 1)) for i, d in enumerate(dests)])
    txid = send(btc, btc.ours, btc.signer, it)
    btc.node.generate(1)
    parsed = btx.parse_signed_hex(btc.node.call("getrawtransaction", txid, 0), "regtest")
    paid = {(o.script_pubkey, o.amount) for o in parsed.outputs}
    for i, d in enumerate(dests):
        assert (btx.script_pubkey_for(d, "regtest"), 1_000_000 * (i + 1)) in paid, f"payment {i} missing"
    assert_eq(btc.ours.status(txid).state, TX_CONFIRMED, "batch mined")


def test_stuck_withdrawal_is_replaced_with_a_higher_fee(funded):
    btc = funded
    btc.ours.scan()
    it = intent("w-rbf", [(btc.faucet.address("faucet", (1, 200)), 5_000_000)])
    stuck = send(btc, btc.ours, btc.signer, it, fee_rate_sat_vb=1)
    assert_eq(btc.ours.status(stuck).state, TX_MEMPOOL, "stuck tx in mempool")
    with pytest.raises(ChainError) as exc:
        btc.ours.bump_fee(it, 1)
    assert_eq(exc.value.reason, "fee_bump_too_small", "reason")
    bumped = btc.ours.bump_fee(it, 5)
    signed = btc.ours.attach_signatures(bumped, btc.signer.sign(btc.ours.digests(bumped, it)), it)
    replacement = btc.ours.broadcast(signed)
    assert replacement != stuck
    wait_until(lambda: stuck not in btc.node.mempool(), 10, "the replaced tx leaves the mempool")
    btc.node.generate(1)
    assert_eq(btc.ours.status(replacement).state, TX_CONFIRMED, "replacement mined")
    assert_eq(btc.ours.status(stuck).state, TX_UNKNOWN, "replaced tx")


def test_sweep_moves_deposits_to_the_hot_wallet(funded):
    btc = funded
    address = btc.ours.address("ours", (0, 50))
    faucet_pays(btc, address, 7_000_000, "faucet-sweep")
    btc.node.generate(1)
    btc.ours.scan()
    it, utx = btc.ours.build_sweep("ours", (1, 9000), "sweep-1", fee_max=FEE_MAX_SATS)
    assert_eq(it.kind, "sweep", "kind")
    signed = btc.ours.attach_signatures(utx, btc.signer.sign(btc.ours.digests(utx, it)), it)
    txid = btc.ours.broadcast(signed)
    btc.node.generate(1)
    btc.ours.scan()
    assert_eq(btc.ours.status(txid).state, TX_CONFIRMED, "sweep mined")
    with pytest.raises(ChainError) as exc:
        btc.ours.build_sweep("ours", (1, 9000), "sweep-2", fee_max=FEE_MAX_SATS)
    assert_eq(exc.value.reason, "nothing_to_sweep", "second sweep")


def test_intent_check_refuses_a_transaction_that_does_not_match(funded):
    btc = funded
    btc.ours.scan()
    dest = btc.faucet.address("faucet", (1, 300))
    it = intent("w-mismatch", [(dest, 2_000_000)])
    utx = btc.ours.build_withdrawal(it)
    keys = btc.signer.vault_keys()
    assert len(btc.ours.checker.check(utx, it, keys)) == len(utx.inputs)
    thief = btc.faucet.address("faucet", (1, 301))
    parsed = btx.parse_unsigned(utx.payload, "regtest")

    def rebuilt(outputs):
        ins = [
            btx.TxIn(t, v, k.amount, keys.child_public_key(k.path), s)
            for (t, v, s), k in zip(parsed.inputs, utx.inputs)
        ]
        return dataclasses.replace(utx, payload=btx.unsigned_bytes(btx.build(ins, outputs, "regtest")))

    pay, change = parsed.outputs

    def reshaped(locktime=0, sequence=btx.SEQUENCE_RBF, version=btx.TX_VERSION):
        ins = [
            btx.TxIn(t, v, k.amount, keys.child_public_key(k.path), sequence)
            for (t, v, s), k in zip(parsed.inputs, utx.inputs)
        ]
        return dataclasses.replace(
            utx, payload=btx.unsigned_bytes(btx.build(ins, parsed.outputs, "regtest", locktime=locktime, version=version))
        )
    cases = [
        ("chain_mismatch", utx, dataclasses.replace(it, chain="ethereum")),
        ("network_mismatch", utx, dataclasses.replace(it, network="testnet")),
        ("asset_mismatch", utx, dataclasses.replace(it, asset="ETH")),
        ("transaction_unparseable", dataclasses.replace(utx, payload=b"\x02\x00"), it),
        ("inputs_mismatch", dataclasses.replace(utx, inputs=utx.inputs + utx.inputs), it),
        ("destination_mismatch", rebuilt([btx.TxOut(btx.script_pubkey_for(thief, "regtest"), pay.amount), change]), it),
        ("amount_mismatch", rebuilt([btx.TxOut(pay.script_pubkey, pay.amount + 1), btx.TxOut(change.script_pubkey, change.amount - 1)]), it),
        ("destination_mismatch", dataclasses.replace(utx, change_paths=()), it),
        ("payment_missing", rebuilt([change]), it),
        ("fee_exceeds_max", utx, dataclasses.replace(it, fee_max=1)),
        ("locktime_not_allowed", reshaped(locktime=10_000_000), it),
        ("sequence_not_allowed", reshaped(sequence=144), it),  # a BIP68 relative lock of 144 blocks
        ("version_not_allowed", reshaped(version=3), it),
        ("destination_mismatch", rebuilt([pay, btx.TxOut(btx.script_pubkey_for(thief, "regtest"), change.amount)]), it),
    ]
    for reason, tx_, it_ in cases:
        assert isinstance(tx_, UnsignedTransaction)
        with pytest.raises(IntentMismatch) as exc:
            btc.ours.checker.check(tx_, it_, keys)
        assert_eq(exc.value.reason, reason, f"case {reason}")
    btc.ours.release(it.intent_id)


def test_fee_estimate_falls_back_to_the_configured_rate_on_btcd(funded):
    assert isinstance(funded.ours, ChainAdapter)
    est = funded.ours.estimate_fee()
    assert_eq((est.source, est.fee_rate), ("fallback", 2), "btcd has no estimatesmartfee")


def test_bad_withdrawals_are_refused_and_change_nothing(funded):
    btc = funded
    btc.ours.scan()

    def snapshot():
        with btc.ours.state.begin() as st:
            tip = st.tip()[0]
            return (
                sorted((u.txid, u.vout) for u in st.spendable_utxos("ours", tip, 1, 100)),
                st.addresses(),
                [st.txs_of(f"bad-{i}") for i in range(len(rows))],
            )

    good_dest = btc.faucet.address("faucet", (1, 400))
    mainnet_dest = btx.p2wpkh_address(btc.signer.vault_keys().child_public_key((9,)), "mainnet")
    rows = [
        ("destination_wrong_network", intent("bad-0", [(mainnet_dest, 100_000)])),
        ("destination_invalid", intent("bad-1", [("bcrt1qnotanaddress", 100_000)])),
        ("amount_below_dust", intent("bad-2", [(good_dest, 545)])),
        ("exceeds_available_balance", intent("bad-3", [(good_dest, 21_000_000 * 100_000_000)])),
        ("fee_exceeds_max", intent("bad-4", [(good_dest, 100_000)], fee_max=10)),
        ("asset_not_supported", intent("bad-5", [(good_dest, 100_000)], asset="ETH")),
        ("vault_unknown", intent("bad-6", [(good_dest, 100_000)], vault="nobody")),
        ("intent_wrong_chain", intent("bad-7", [(good_dest, 100_000)], network="testnet")),
    ]
    before = snapshot()
    for reason, it in rows:
        with pytest.raises(ChainError) as exc:
            btc.ours.build_withdrawal(it)
        assert_eq(exc.value.reason, reason, f"refusal of {it.intent_id}")
        assert_eq(snapshot(), before, f"state after refusing {it.intent_id}")
