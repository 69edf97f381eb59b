"""Properties of the intent check, without a node: what the builder makes passes; any change to
what the approvers approved (a payment's destination or amount, the chain id, the token) is
refused. Keys are public only (an xpub from BIP32 test vector 2)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from chains import intent_checker
from chains.bitcoin import tx as btx
from chains.ethereum import tx as etx
from chains.keys import Bip32VaultKeys
from node import limits
from node.ports import InputKey, IntentChecker, IntentMismatch, Payment, UnsignedTransaction, WithdrawalIntent
from tests.support.cluster import funding_tx

KEYS = Bip32VaultKeys.from_xpub(
    "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB"
)
OUTSIDE = Bip32VaultKeys.from_xpub(
    "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw"
)
BTC = intent_checker("bitcoin")
ETH = intent_checker("ethereum")


def test_checkers_implement_the_port():
    assert isinstance(BTC, IntentChecker) and isinstance(ETH, IntentChecker)
    assert (BTC.chain, ETH.chain) == ("bitcoin", "ethereum")


def btc_case(amounts, n_inputs, change):
    dests = [btx.p2wpkh_address(OUTSIDE.child_public_key((i,)), "regtest") for i in range(len(amounts))]
    coins = funding_tx("coins", [(btx.p2wpkh_script_pubkey(KEYS.child_public_key((0, i))), 10_000_000) for i in range(n_inputs)])
    ins = [btx.TxIn(btx.txid_of(coins), i, 10_000_000, KEYS.child_public_key((0, i))) for i in range(n_inputs)]
    outs = [btx.TxOut(btx.script_pubkey_for(d, "regtest"), a) for d, a in zip(dests, amounts)]
    change_paths = ()
    if change:
        outs.append(btx.TxOut(btx.p2wpkh_script_pubkey(KEYS.child_public_key((1, 0))), change))
        change_paths = ((1, 0),)
    total_out = sum(o.amount for o in outs)
    fee = n_inputs * 10_000_000 - total_out
    utx = UnsignedTransaction(
        "bitcoin", "regtest", btx.unsigned_bytes(btx.build(ins, outs, "regtest")),
        tuple(InputKey((0, i), 10_000_000) for i in range(n_inputs)), change_paths, (coins,),
    )
    it = WithdrawalIntent("i", "v", "bitcoin", "regtest", "BTC", tuple(Payment(d, a) for d, a in zip(dests, amounts)), fee)
    return utx, it, ins, outs


@settings(max_examples=40, deadline=None)
@given(
    amounts=st.lists(st.integers(546, 2_000_000), min_size=1, max_size=5),
    n_inputs=st.integers(1, 3),
    change=st.integers(0, 5_000_000),
    which=st.integers(0, 4),
    delta=st.integers(1, 1000),
)
def test_bitcoin_any_change_to_a_payment_is_refused(amounts, n_inputs, change, which, delta):
    change = change if change >= 546 else 0
    utx, it, ins, outs = btc_case(amounts, n_inputs, change)
    digests = BTC.check(utx, it, KEYS)
    assert len(digests) == n_inputs and all(len(d.digest) == 32 for d in digests)
    k = which % len(amounts)
    # The amount of payment k is changed (the difference moved to the fee or out of it).
    bad = list(outs)
    bad[k] = btx.TxOut(outs[k].script_pubkey, outs[k].amount + delta)
    tampered = dataclasses.replace(utx, payload=btx.unsigned_bytes(btx.build(ins, bad, "regtest")))
    try:
        BTC.check(tampered, it, KEYS)
        raise AssertionError("a changed payment amount passed the intent check")
    except IntentMismatch as exc:
        assert exc.reason in ("amount_mismatch", "fee_not_positive"), exc.reason
    # Payment k goes to someone else.
    thief = btx.p2wpkh_script_pubkey(OUTSIDE.child_public_key((99,)))
    bad = list(outs)
    bad[k] = btx.TxOut(thief, outs[k].amount)
    tampered = dataclasses.replace(utx, payload=btx.unsigned_bytes(btx.build(ins, bad, "regtest")))
    try:
        BTC.check(tampered, it, KEYS)
        raise AssertionError("a changed destination passed the intent check")
    except IntentMismatch as exc:
        assert exc.reason == "destination_mismatch", exc.reason


@settings(max_examples=40, deadline=None)
@given(
    amount=st.integers(1, 10**30),
    token=st.booleans(),
    nonce=st.integers(0, limits.CLUSTER_ETH_NONCE_WINDOW - 1),  # past it a nonce needs evidence: test_nonce_window.py
    tweak=st.sampled_from(["amount", "destination", "chain_id", "to"]),
)
def test_ethereum_any_change_to_the_payment_is_refused(amount, token, nonce, tweak):
    dest = etx.address_of(OUTSIDE.child_public_key((7,)))
    contract = etx.checksum("0x" + "42" * 20)
    if token:
        t = etx.Eip1559Tx(1337, nonce, 10**9, 5 * 10**9, 60_000, contract, 0, etx.erc20_transfer_data(dest, amount))
        asset = f"ERC20:{contract}"
    else:
        t = etx.Eip1559Tx(1337, nonce, 10**9, 5 * 10**9, 21_000, dest, amount)
        asset = "ETH"
    utx = UnsignedTransaction("ethereum", "1337", etx.unsigned_payload(t), (InputKey((1, 0)),))
    it = WithdrawalIntent("i", "v", "ethereum", "1337", asset, (Payment(dest, amount),), 10**16)
    (d,) = ETH.check(utx, it, KEYS)
    assert d.digest == etx.digest_eth_account(t)
    thief = etx.address_of(OUTSIDE.child_public_key((8,)))
    if tweak == "amount":
        bad = dataclasses.replace(t, data=etx.erc20_transfer_data(dest, amount + 1)) if token else dataclasses.replace(t, value=amount + 1)
    elif tweak == "destination":
        bad = dataclasses.replace(t, data=etx.erc20_transfer_data(thief, amount)) if token else dataclasses.replace(t, to=thief)
    elif tweak == "chain_id":
        bad = dataclasses.replace(t, chain_id=1)
    else:
        bad = dataclasses.replace(t, to=thief)
    try:
        ETH.check(dataclasses.replace(utx, payload=etx.unsigned_payload(bad)), it, KEYS)
        raise AssertionError(f"{tweak} changed and the intent check passed")
    except IntentMismatch as exc:
        assert exc.reason in ("amount_mismatch", "destination_mismatch", "chain_id_mismatch", "asset_mismatch"), exc.reason
