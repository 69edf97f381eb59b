"""The Ethereum adapter against a real Anvil (one node for this module) and a test ERC-20
compiled at test time.

Signatures come from a plain test key (tests/support/test_signer.py), standing in for the MPC
cluster, and only here. Anvil's unlocked dev account plays the outside payer.
"""

from __future__ import annotations

import dataclasses

import pytest

from chains.errors import ChainError
from chains.ethereum import tx as etx
from node.ports import (
    DEPOSIT_CREDITED,
    DEPOSIT_REORGED_AFTER_CREDIT,
    DEPOSIT_VOIDED,
    OBSERVED_SEEN,
    TX_CONFIRMED,
    TX_MEMPOOL,
    TX_UNKNOWN,
    ChainAdapter,
    IntentMismatch,
    Payment,
    WithdrawalIntent,
)
from tests.functional.chains.conftest import ETH_CONFIRMATIONS, GWEI
from tests.support.procs import wait_until

pytestmark = pytest.mark.functional

ETH = 10**18
FEE_MAX_WEI = 10**16
HOT = (1, 0)
STATION = (1, 1)


def intent(eth, intent_id, dest, amount, asset="ETH", **kw) -> WithdrawalIntent:
    return WithdrawalIntent(
        intent_id=intent_id,
        vault_id="ours",
        chain="ethereum",
        network=str(eth.node.CHAIN_ID),
        asset=asset,
        payments=(Payment(dest, amount),),
        fee_max=kw.pop("fee_max", FEE_MAX_WEI),
        **kw,
    )


def sign_and_send(eth, adapter, utx, it) -> str:
    signed = adapter.attach_signatures(utx, eth.signer.sign(adapter.digests(utx, it)), it)
    return adapter.broadcast(signed)


def seen_of(result):
    return [o for o in result.events if o.kind == OBSERVED_SEEN]


def assert_eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


@pytest.fixture(scope="module")
def hot(eth):
    address = eth.ours.address("ours", HOT)
    eth.node.set_balance(address, 100 * ETH)
    eth.pay_token(address, 5_000_000)  # an internal address: funds, not a deposit
    return address


def test_eth_and_token_deposits_pending_then_credited(eth, hot, eth_books):
    books = eth_books
    eth.ours.scan()
    dep = books.issue("ETH")
    eth_tx = eth.pay_eth(dep, 2 * ETH)
    token_tx = eth.pay_token(dep, 1_234_567)
    first = eth.ours.scan()
    seen = sorted((o.asset, o.txid, o.amount) for o in seen_of(first))
    assert_eq(seen, sorted([("ETH", eth_tx, 2 * ETH), (eth.asset, token_tx, 1_234_567)]), "observed")
    r = books.sync()
    assert_eq((r.pending, r.credited), (2, 0), "pending, not credited too early")
    eth.node.mine(ETH_CONFIRMATIONS - 1)
    eth.ours.scan()
    assert_eq(books.sync().credited, 2, "credited at depth")
    assert_eq([s for s, *_ in books.of(eth_tx) + books.of(token_tx)], [DEPOSIT_CREDITED] * 2, "credited")
    assert_eq(eth.ours.scan().events, (), "a scan with nothing new")
    assert_eq(books.sync().total, 0, "a pass with nothing new")
    # The hot wallet's funding from the outside was never a deposit: it is internal.
    assert not [o for o in eth.ours.observations(0, 500).items if o.address == hot]


def test_reorg_before_depth_voids_and_after_depth_flags(eth, hot, eth_books):
    books = eth_books
    eth.ours.scan()
    early = books.issue("ETH")
    credited_tx = eth.pay_eth(early, ETH)
    eth.node.mine(ETH_CONFIRMATIONS)
    eth.ours.scan()
    books.sync()
    assert_eq([s for s, *_ in books.of(credited_tx)], [DEPOSIT_CREDITED], "credited")
    late = books.issue("ETH")
    pending_tx = eth.pay_token(late, 777)
    assert_eq([o.txid for o in seen_of(eth.ours.scan())], [pending_tx], "observed")
    assert_eq(books.sync().pending, 1, "pending")
    # Replace the last ETH_CONFIRMATIONS + 2 blocks with empty ones.
    tip = eth.node.height()
    eth.node.call("anvil_reorg", ETH_CONFIRMATIONS + 2, [])
    result = eth.ours.scan()
    assert_eq(result.rolled_back_to, tip - ETH_CONFIRMATIONS - 2, "fork height")
    r = books.sync()
    assert_eq((r.voided, r.flagged), (1, 1), "voided and flagged")
    assert_eq([s for s, *_ in books.of(pending_tx)], [DEPOSIT_VOIDED], "voided")
    assert_eq([s for s, *_ in books.of(credited_tx)], [DEPOSIT_REORGED_AFTER_CREDIT], "flagged")


def test_eth_withdrawal_mined(eth, hot):
    dest = eth.w3.eth.accounts[1]
    before = eth.w3.eth.get_balance(dest)
    it = intent(eth, "eth-w-1", dest, ETH // 10)
    utx = eth.ours.build_withdrawal(it, source_path=HOT)
    assert_eq(eth.ours.build_withdrawal(it, source_path=HOT).payload, utx.payload, "idempotent rebuild")
    txid = sign_and_send(eth, eth.ours, utx, it)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "the ETH withdrawal is mined")
    assert_eq(eth.w3.eth.get_balance(dest) - before, ETH // 10, "received")
    refusals = [
        ("intent_id_reused_with_different_fields", lambda: eth.ours.build_withdrawal(intent(eth, "eth-w-1", dest, 1), source_path=HOT)),
        ("already_confirmed", lambda: eth.ours.replace(it)),
        ("already_signed", lambda: eth.ours.release(it.intent_id, HOT, "ours")),
    ]
    for reason, call in refusals:
        with pytest.raises(ChainError) as exc:
            call()
        assert_eq(exc.value.reason, reason, "refusal")
    assert_eq(eth.ours.signed_of(it.intent_id).txid, txid, "signed transaction kept for rebroadcast")


def test_a_withdrawal_reorged_out_is_rebroadcast_unchanged(eth, hot):
    dest = eth.w3.eth.accounts[1]
    it = intent(eth, "eth-reorged", dest, 777)
    txid = sign_and_send(eth, eth.ours, eth.ours.build_withdrawal(it, source_path=HOT), it)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "mined")
    eth.node.call("anvil_reorg", 1, [])  # the block holding it is replaced by an empty one
    assert eth.ours.status(txid).state == TX_UNKNOWN, "gone with the reorg"
    signed = eth.ours.signed_of(it.intent_id)  # after a restart too: it is in the adapter's state
    assert_eq(eth.ours.broadcast(signed), txid, "the same transaction, same nonce, same hash")
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "mined again")
    eth.ours.scan()


def test_erc20_withdrawal_mined(eth, hot):
    dest = eth.w3.eth.accounts[1]
    it = intent(eth, "tok-w-1", dest, 250_000, asset=eth.asset)
    txid = sign_and_send(eth, eth.ours, eth.ours.build_withdrawal(it, source_path=HOT), it)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "the token withdrawal is mined")
    assert_eq(eth.token.functions.balanceOf(dest).call(), 250_000, "token received")


def test_nonce_sequence_survives_a_restart(eth, hot):
    dest = eth.w3.eth.accounts[1]
    start = eth.w3.eth.get_transaction_count(hot)
    a = intent(eth, "nonce-a", dest, 1000)
    b = intent(eth, "nonce-b", dest, 2000)
    c = intent(eth, "nonce-c", dest, 3000)
    d = intent(eth, "nonce-d", dest, 4000)
    utx_a = eth.ours.build_withdrawal(a, source_path=HOT)
    sign_and_send(eth, eth.ours, utx_a, a)
    eth.ours.build_withdrawal(b, source_path=HOT)  # built, not yet signed
    eth.ours.build_withdrawal(d, source_path=HOT)  # built, then cancelled below
    eth.ours.release("nonce-d", HOT, "ours")
    restarted = eth.adapter()  # a new process: same database, nothing in memory
    utx_b = restarted.build_withdrawal(b, source_path=HOT)  # the same transaction as before
    utx_c = restarted.build_withdrawal(c, source_path=HOT)
    nonces = [etx.parse_unsigned(u.payload).nonce for u in (utx_a, utx_b, utx_c)]
    assert_eq(nonces, [start, start + 1, start + 2], "nonces: no reuse, no gap (c took d's released nonce)")
    for utx, it in ((utx_c, c), (utx_b, b)):  # out of order on purpose
        sign_and_send(eth, restarted, utx, it)
    wait_until(lambda: eth.w3.eth.get_transaction_count(hot) == start + 3, 10, "all three mined")


def test_stuck_transaction_is_replaced(eth, hot):
    dest = eth.w3.eth.accounts[1]
    eth.w3.provider.make_request("evm_setAutomine", [False])
    try:
        low = etx_fee(1 * GWEI, 1)
        it = intent(eth, "eth-stuck", dest, 5000)
        stuck = sign_and_send(eth, eth.ours, eth.ours.build_withdrawal(it, source_path=HOT, fee=low), it)
        assert_eq(eth.ours.status(stuck).state, TX_MEMPOOL, "stuck")
        with pytest.raises(ChainError) as exc:
            eth.ours.replace(it, bump_percent=5)
        assert_eq(exc.value.reason, "fee_bump_too_small", "reason")
        replacement = eth.ours.replace(it, bump_percent=50)
        assert_eq(etx.parse_unsigned(replacement.payload).nonce, etx.parse_unsigned(eth.ours.build_withdrawal(it, source_path=HOT).payload).nonce, "same nonce")
        new = sign_and_send(eth, eth.ours, replacement, it)
        eth.node.mine(1)
    finally:
        eth.w3.provider.make_request("evm_setAutomine", [True])
    assert_eq(eth.ours.status(new).state, TX_CONFIRMED, "replacement mined")
    assert_eq(eth.ours.status(stuck).state, TX_UNKNOWN, "the stuck one is gone")


def etx_fee(max_fee, prio):
    from node.ports import FeeEstimate

    return FeeEstimate("test", max_fee_per_gas=max_fee, max_priority_fee_per_gas=prio)


def test_token_sweep_with_gas_from_the_station(eth, hot):
    station = eth.ours.address("ours", STATION)
    eth.node.set_balance(station, 10 * ETH)
    dep_path = (0, 10)
    dep = eth.ours.address("ours", dep_path)
    eth.pay_token(dep, 40_000)
    eth.ours.scan()
    with pytest.raises(ChainError) as exc:
        eth.ours.build_sweep("ours", dep_path, HOT, eth.asset, "sweep-tok-early", FEE_MAX_WEI)
    assert_eq(exc.value.reason, "sweep_needs_gas", "sweep before gas")
    fee = eth.ours.estimate_fee()
    need = eth.ours.sweep_gas_needed(eth.asset, fee, dep, hot)
    topup_intent, topup = eth.ours.build_gas_topup("ours", STATION, dep_path, need, "gas-1", FEE_MAX_WEI)
    gas_tx = sign_and_send(eth, eth.ours, topup, topup_intent)
    wait_until(lambda: eth.ours.status(gas_tx).state == TX_CONFIRMED, 10, "gas top-up mined")
    hot_before = eth.token.functions.balanceOf(hot).call()
    it, utx = eth.ours.build_sweep("ours", dep_path, HOT, eth.asset, "sweep-tok-1", FEE_MAX_WEI, fee=fee)
    assert_eq(it.kind, "sweep", "kind")
    txid = sign_and_send(eth, eth.ours, utx, it)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "token sweep mined")
    assert_eq(eth.token.functions.balanceOf(hot).call() - hot_before, 40_000, "swept to hot")
    assert_eq(eth.token.functions.balanceOf(dep).call(), 0, "deposit address emptied")
    # The top-up to our own deposit address is not a customer deposit.
    eth.node.mine(1)
    eth.ours.scan()
    assert not [o for o in eth.ours.observations(0, 500).items if o.txid == gas_tx]


def test_eth_sweep_pays_its_own_gas(eth, hot):
    dep_path = (0, 11)
    dep = eth.ours.address("ours", dep_path)
    eth.pay_eth(dep, ETH // 2)
    hot_before = eth.w3.eth.get_balance(hot)
    it, utx = eth.ours.build_sweep("ours", dep_path, HOT, "ETH", "sweep-eth-1", FEE_MAX_WEI)
    assert_eq((it.kind, it.own_destination_paths), ("sweep", (HOT,)), "a sweep to our own address")
    txid = sign_and_send(eth, eth.ours, utx, it)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "ETH sweep mined")
    assert_eq(eth.w3.eth.get_balance(hot) - hot_before, it.payments[0].amount, "swept to hot")
    assert eth.w3.eth.get_balance(dep) < 21_000 * etx.parse_unsigned(utx.payload).max_fee_per_gas, "only unused gas is left"


def test_intent_check_refuses_a_transaction_that_does_not_match(eth, hot):
    dest = eth.w3.eth.accounts[1]
    thief = "0x" + "11" * 20
    keys = eth.signer.vault_keys()
    it = intent(eth, "mismatch-1", dest, 10_000, asset=eth.asset)
    utx = eth.ours.build_withdrawal(it, source_path=HOT)
    base = etx.parse_unsigned(utx.payload)
    assert len(eth.ours.checker.check(utx, it, keys)) == 1

    def tampered(**changes):
        return dataclasses.replace(utx, payload=etx.unsigned_payload(dataclasses.replace(base, **changes)))

    other_token = "0x" + "22" * 20
    cases = [
        ("chain_mismatch", utx, dataclasses.replace(it, chain="bitcoin")),
        ("network_mismatch", utx, dataclasses.replace(it, network="1")),
        ("asset_mismatch", utx, dataclasses.replace(it, asset="DOGE")),
        ("transaction_type_not_eip1559", dataclasses.replace(utx, payload=b"\x01" + utx.payload[1:]), it),
        ("chain_id_mismatch", tampered(chain_id=1), it),
        ("asset_mismatch", tampered(to=etx.checksum(other_token)), it),
        ("destination_mismatch", tampered(data=etx.erc20_transfer_data(thief, 10_000)), it),
        ("amount_mismatch", tampered(data=etx.erc20_transfer_data(dest, 10_001)), it),
        ("value_not_allowed", tampered(value=1), it),
        ("fee_exceeds_max", tampered(max_fee_per_gas=FEE_MAX_WEI), it),
        ("amount_mismatch", tampered(to=etx.checksum(dest), data=b"", value=9), dataclasses.replace(it, asset="ETH")),
        ("data_not_allowed", tampered(to=etx.checksum(dest), value=10_000), dataclasses.replace(it, asset="ETH")),
        ("sweep_destination_not_ours", utx, dataclasses.replace(it, kind="sweep", own_destination_paths=(HOT,))),
    ]
    for reason, tx_, it_ in cases:
        with pytest.raises(IntentMismatch) as exc:
            eth.ours.checker.check(tx_, it_, keys)
        assert_eq(exc.value.reason, reason, f"case {reason}")
    eth.ours.release("mismatch-1", HOT, "ours")


def test_fee_estimate_comes_from_the_node(eth):
    assert isinstance(eth.ours, ChainAdapter)
    est = eth.ours.estimate_fee()
    assert est.source == "node" and 0 < est.max_priority_fee_per_gas <= est.max_fee_per_gas, est


def test_bad_withdrawals_are_refused_and_take_no_nonce(eth, hot):
    dest = eth.w3.eth.accounts[1]
    rows = [
        ("destination_invalid", intent(eth, "bad-e0", "0x1234", 1)),
        ("destination_checksum_invalid", intent(eth, "bad-e1", EIP55_BROKEN, 1)),
        ("asset_not_supported", intent(eth, "bad-e2", dest, 1, asset="BTC")),
        ("fee_exceeds_max", intent(eth, "bad-e3", dest, 1, fee_max=1)),
        ("intent_wrong_chain", dataclasses.replace(intent(eth, "bad-e4", dest, 1), network="1")),
        ("vault_unknown", dataclasses.replace(intent(eth, "bad-e5", dest, 1), vault_id="nobody")),
        ("transaction_would_revert", intent(eth, "bad-e6", dest, 10**15, asset=eth.asset)),  # more tokens than hot holds
    ]
    for reason, it in rows:
        with pytest.raises(ChainError) as exc:
            eth.ours.build_withdrawal(it, source_path=HOT)
        assert_eq(exc.value.reason, reason, f"refusal of {it.intent_id}")
        assert_eq(eth.ours.nonce_of(it.intent_id, hot), None, f"nonce taken by {it.intent_id}")
        with eth.ours.state.begin() as st:
            assert_eq(st.txs_of(it.intent_id), [], f"transactions recorded for {it.intent_id}")
    # The next good withdrawal gets the next nonce: no gap was left.
    it = intent(eth, "after-bad", dest, 1)
    utx = eth.ours.build_withdrawal(it, source_path=HOT)
    assert_eq(etx.parse_unsigned(utx.payload).nonce, eth.w3.eth.get_transaction_count(hot, "pending"), "next nonce")
    eth.ours.release("after-bad", HOT, "ours")


EIP55_BROKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # last letter's case flipped


def test_past_the_nonce_window_the_adapter_attaches_what_it_signed_as_evidence(eth, hot):
    """A sender at nonce W - 1 (anvil_setNonce: as if it had sent that many) needs no evidence;
    at W the peers need a transaction of ours signed near it: the adapter attaches the one it
    just signed, the intent check accepts it, and the chain mines it. A sender whose nonce moved
    far ahead with nothing of ours signed is refused before a nonce is taken."""
    from chains.ethereum import tx as etx
    from node import limits

    w = limits.CLUSTER_ETH_NONCE_WINDOW
    sender_path, dest = (1, 7), eth.w3.eth.accounts[1]
    sender = eth.ours.address("ours", sender_path)
    eth.node.set_balance(sender, 10 * ETH)
    eth.node.call("anvil_setNonce", sender, hex(w - 1))
    first = intent(eth, "window-1", dest, ETH // 100)
    utx = eth.ours.build_withdrawal(first, source_path=sender_path)
    assert_eq((etx.parse_unsigned(utx.payload).nonce, utx.nonce_evidence), (w - 1, b""), "inside the window: no evidence")
    txid = sign_and_send(eth, eth.ours, utx, first)
    wait_until(lambda: eth.ours.status(txid).state == TX_CONFIRMED, 10, "nonce W - 1 is mined")
    second = intent(eth, "window-2", dest, ETH // 100)
    utx2 = eth.ours.build_withdrawal(second, source_path=sender_path)
    assert_eq(etx.parse_unsigned(utx2.payload).nonce, w, "the next nonce")
    assert_eq(etx.parse_signed(utx2.nonce_evidence)[0].nonce, w - 1, "evidence: what we signed at W - 1")
    assert_eq(eth.ours.build_withdrawal(second, source_path=sender_path).nonce_evidence, utx2.nonce_evidence, "kept on rebuild")
    txid2 = sign_and_send(eth, eth.ours, utx2, second)
    wait_until(lambda: eth.ours.status(txid2).state == TX_CONFIRMED, 10, "nonce W is mined")
    far_path = (1, 8)
    far = eth.ours.address("ours", far_path)
    eth.node.set_balance(far, 10 * ETH)
    eth.node.call("anvil_setNonce", far, hex(10 * w))
    with pytest.raises(ChainError) as exc:
        eth.ours.build_withdrawal(intent(eth, "window-far", dest, ETH // 100), source_path=far_path)
    assert_eq(exc.value.reason, "nonce_evidence_not_found", "refusal")
    assert_eq(eth.ours.nonce_of("window-far", far), None, "no nonce taken")
