"""Proven input amounts (issue 14, attack 2): the previous-transaction parser against published
bytes and bitcoinlib, and the intent check's refusals, one row per way a node could lie about
an input. Public keys only (BIP32 test vector 2's xpub); the witness cross-check signs with a
plain test key (tests/support/test_signer.py, test only)."""

from __future__ import annotations

import dataclasses

import pytest

from chains import intent_checker
from chains.bitcoin import prevtx
from chains.bitcoin import tx as btx
from chains.keys import Bip32VaultKeys
from node import limits
from node.ports import InputKey, InputUnproven, IntentMismatch
from tests.support.cluster import btc_withdrawal, funding_tx
from tests.support.test_signer import PlainTestSigner

KEYS = Bip32VaultKeys.from_xpub(
    "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB"
)
BTC = intent_checker("bitcoin")

# The genesis block's coinbase (block 0, https://en.bitcoin.it/wiki/Genesis_block): a legacy
# transaction with one 50 BTC output.
GENESIS_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d01044554"
    "68652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64"
    "206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b710"
    "5cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000"
)
GENESIS_COINBASE_TXID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def test_the_genesis_coinbase_parses_to_its_txid_and_its_one_output():
    p = prevtx.parse_stripped(GENESIS_COINBASE)
    assert p.txid == GENESIS_COINBASE_TXID
    assert [o.amount for o in p.outputs.values()] == [50 * 100_000_000] and p.outputs_count == 1
    assert prevtx.strip(GENESIS_COINBASE) == GENESIS_COINBASE, "a legacy transaction is its own stripped form"


def test_a_signed_segwit_transaction_strips_to_bitcoinlibs_unsigned_bytes_and_txid():
    signer = PlainTestSigner("prevtx-witness")
    keys = signer.vault_keys()
    tx, intent = btc_withdrawal(keys, "v", n_inputs=2)
    digests = BTC.check(tx, intent, keys)
    t, _ = BTC.rebuild(tx, keys)
    signed = btx.attach(t, signer.sign(digests))
    assert signed != tx.payload and signed[4:6] == b"\x00\x01", "the witness form"
    assert prevtx.strip(signed) == tx.payload
    assert prevtx.parse_stripped(prevtx.strip(signed)).txid == btx.txid_of(tx.payload)
    with pytest.raises(prevtx.PrevTxInvalid) as e:
        prevtx.parse_stripped(signed)  # a peer takes the stripped form only
    assert e.value.reason == "prev_tx_malformed"


@pytest.mark.parametrize("raw", [b"", GENESIS_COINBASE[:-1], GENESIS_COINBASE + b"\x00", GENESIS_COINBASE[:4] + b"\x00" + GENESIS_COINBASE[5:]],
                         ids=["empty", "truncated", "trailing byte", "no inputs"])
def test_malformed_bytes_are_refused(raw):
    with pytest.raises(prevtx.PrevTxInvalid) as e:
        prevtx.parse_stripped(raw)
    assert e.value.reason == "prev_tx_malformed"


def script(path) -> bytes:
    return btx.p2wpkh_script_pubkey(KEYS.child_public_key(path))


def honest(n_inputs=2):
    """Two inputs of 5 BTC, each from its own funding transaction; the intent allows 5,000 sat."""
    return btc_withdrawal(KEYS, "v", n_inputs=n_inputs, fee_sats=1_000)


def lie_amount(tx, n, delta):
    inputs = list(tx.inputs)
    inputs[n] = InputKey(inputs[n].path, inputs[n].amount - delta)
    return dataclasses.replace(tx, inputs=tuple(inputs))


def big(label, n_bytes):
    """A funding transaction of about `n_bytes`, its first output ours at (0, 0)."""
    outs = [(script((0, 0)), 500_000_000)] + [(b"\x6a" + b"\x00" * 200, 0)] * (n_bytes // 210)
    return funding_tx(label, outs)


def with_prev(tx, prev_txs):
    return dataclasses.replace(tx, prev_txs=tuple(prev_txs))


def forged(tx, n, amount):
    """Input n's funding transaction rewritten to pay `amount`: another txid."""
    prev = list(tx.prev_txs)
    prev[n] = funding_tx(f"funding-{n}", [(script((0, n)), amount)])
    return with_prev(tx, prev)


def respent(tx, prev, vout=0, amount=500_000_000):
    """`tx` rebuilt to spend output `vout` of `prev` only (its one input at (0, 0), stating `amount`)."""
    p = prevtx.parse_stripped(prev)
    parsed = btx.parse_unsigned(tx.payload, "regtest")
    outs = [parsed.outputs[0], btx.TxOut(parsed.outputs[1].script_pubkey, amount - parsed.outputs[0].amount - 1_000)]
    t = btx.build([btx.TxIn(p.txid, vout, amount, KEYS.child_public_key((0, 0)))], outs, "regtest")
    return dataclasses.replace(tx, payload=btx.unsigned_bytes(t), inputs=(InputKey((0, 0), amount),), prev_txs=(prev,))


D = 100_000_000  # understated by 1 BTC: the real fee would be 1 BTC + the stated one
CASES = [
    # (case, make(tx) -> tx, expected reason); errors in the checker's precedence order
    ("all previous transactions together too large",
     lambda tx: with_prev(tx, [big("a", limits.CLUSTER_PREV_TXS_BYTES_MAX // 2 + 500), big("b", limits.CLUSTER_PREV_TXS_BYTES_MAX // 2 + 500)]),
     "prev_txs_too_large"),
    ("a large previous transaction beside another",
     lambda tx: with_prev(tx, [big("a", limits.CLUSTER_PREV_TX_BYTES_MAX + 500), tx.prev_txs[1]]), "prev_tx_too_large"),
    ("not a transaction", lambda tx: with_prev(tx, [tx.prev_txs[0], b"\x02\x00\x00\x00"]), "prev_tx_malformed"),
    ("sent twice", lambda tx: with_prev(tx, [tx.prev_txs[0], tx.prev_txs[0], tx.prev_txs[1]]), "prev_tx_duplicate"),
    ("left out", lambda tx: with_prev(tx, tx.prev_txs[:1]), "prev_tx_missing"),
    ("none at all", lambda tx: with_prev(tx, []), "prev_tx_missing"),
    ("forged to state a smaller amount (another txid)", lambda tx: lie_amount(forged(tx, 1, 400_000_000), 1, D), "prev_tx_missing"),
    ("no such output", lambda tx: respent(tx, funding_tx("one-output", [(script((0, 0)), 500_000_000)]), vout=1), "prev_tx_mismatch"),
    ("the output pays another key", lambda tx: respent(tx, funding_tx("elsewhere", [(script((0, 7)), 500_000_000)])),
     "prev_tx_mismatch"),
    ("the first amount understated", lambda tx: lie_amount(tx, 0, D), "input_amount_mismatch"),
    ("the second amount understated", lambda tx: lie_amount(tx, 1, D), "input_amount_mismatch"),
    ("an amount overstated", lambda tx: lie_amount(tx, 1, -1), "input_amount_mismatch"),
    ("an extra previous transaction", lambda tx: with_prev(tx, list(tx.prev_txs) + [GENESIS_COINBASE]), "prev_tx_unused"),
]


@pytest.mark.parametrize("case,make,reason", CASES, ids=[c[0] for c in CASES])
def test_an_input_not_proven_by_its_previous_transaction_is_refused(case, make, reason):
    tx, intent = honest()
    assert len(BTC.check(tx, intent, KEYS)) == 2, "the honest transaction passes"
    with pytest.raises(InputUnproven) as e:
        BTC.check(make(tx), intent, KEYS)
    assert e.value.reason == reason, f"{case}: {e.value}"


def test_a_large_parent_alone_is_proven_and_the_real_fee_is_held_to_fee_max():
    tx, intent = honest(n_inputs=1)
    alone = respent(tx, big("large", limits.CLUSTER_PREV_TX_BYTES_MAX + 10_000))
    assert len(BTC.check(alone, intent, KEYS)) == 1, "a deposit whose parent is large is swept alone"
    # the real amounts decide the fee: 1 BTC more in than the transaction pays out
    tx, intent = btc_withdrawal(KEYS, "v", in_amounts=(500_000_000 + D, 500_000_000), fee_sats=4_999 + D, fee_max=10_000)
    with pytest.raises(IntentMismatch) as e:
        BTC.check(tx, intent, KEYS)
    assert e.value.reason == "fee_exceeds_max" and not isinstance(e.value, InputUnproven)
