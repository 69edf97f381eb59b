"""IntentChecker.spends, the port's answer to "what does this transaction consume on chain": two
versions of an intent conflict (at most one is ever mined) when their sets share an element.
The signer's spend-once rule (mpc/signer/records.py) stands on it. Real unsigned transactions
(tests/support/cluster.py), public keys only (BIP32 test vector 2's xpub)."""

from __future__ import annotations

import pytest

from chains import intent_checker
from chains.bitcoin import tx as btx
from chains.ethereum import tx as etx
from chains.keys import Bip32VaultKeys
from node.ports import InputKey, IntentMismatch, UnsignedTransaction
from tests.support.cluster import btc_withdrawal, eth_withdrawal, funding_tx

KEYS = Bip32VaultKeys.from_xpub(
    "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB"
)
SENDER = etx.address_of(KEYS.child_public_key((0, 0)))


def outpoint(funding: str, i: int) -> str:
    """Input i spends output 0 of its own funding transaction (tests/support/cluster.py)."""
    script = btx.p2wpkh_script_pubkey(KEYS.child_public_key((0, i)))
    return f"{btx.txid_of(funding_tx(f'{funding}-{i}', [(script, 500_000_000)]))}:0"


def btc(**kw) -> UnsignedTransaction:
    return btc_withdrawal(KEYS, "v", **kw)[0]


def eth(**kw) -> UnsignedTransaction:
    return eth_withdrawal(KEYS, "v", **kw)[0]


SPENDS = [
    # (case, chain, transaction, what it spends)
    ("bitcoin, one input", "bitcoin", lambda: btc(), {outpoint("funding", 0)}),
    ("bitcoin, three inputs", "bitcoin", lambda: btc(n_inputs=3), {outpoint("funding", i) for i in range(3)}),
    ("bitcoin, a fee bump spends the same", "bitcoin", lambda: btc(fee_sats=3_000), {outpoint("funding", 0)}),
    ("bitcoin, other coins", "bitcoin", lambda: btc(funding="other"), {outpoint("other", 0)}),
    ("ethereum, nonce 0", "ethereum", lambda: eth(), {f"{SENDER}:0"}),
    ("ethereum, a replacement at the same nonce", "ethereum", lambda: eth(max_fee_per_gas=3 * 10**9), {f"{SENDER}:0"}),
    ("ethereum, another nonce", "ethereum", lambda: eth(nonce=7), {f"{SENDER}:7"}),
    ("ethereum, another sender path", "ethereum",
     lambda: UnsignedTransaction("ethereum", "1337", eth().payload, (InputKey((0, 1)),)),
     {f"{etx.address_of(KEYS.child_public_key((0, 1)))}:0"}),
]


@pytest.mark.parametrize("case,chain,make,expected", SPENDS, ids=[c[0] for c in SPENDS])
def test_spends(case, chain, make, expected):
    assert intent_checker(chain).spends(make(), KEYS) == frozenset(expected)


REFUSED = [
    # (case, chain, transaction, reason)
    ("bitcoin, not a transaction", "bitcoin", UnsignedTransaction("bitcoin", "regtest", b"\x00" * 10, (InputKey((0, 0), 1),)), None),
    ("ethereum, not a transaction", "ethereum", UnsignedTransaction("ethereum", "1337", b"\x02\xc0", (InputKey((0, 0)),)), None),
    ("ethereum, two senders", "ethereum", UnsignedTransaction("ethereum", "1337", b"", (InputKey((0, 0)), InputKey((0, 1)))),
     "inputs_mismatch"),
    ("ethereum, a hardened sender path", "ethereum", UnsignedTransaction("ethereum", "1337", b"", (InputKey((2**31,)),)), None),
]


@pytest.mark.parametrize("case,chain,tx,reason", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_transaction_that_does_not_parse_is_an_intent_mismatch(case, chain, tx, reason):
    with pytest.raises(IntentMismatch) as e:
        intent_checker(chain).spends(tx, KEYS)
    if reason:
        assert e.value.reason == reason
