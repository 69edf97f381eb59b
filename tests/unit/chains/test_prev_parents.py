"""Coin selection within what the signer peers take as input proofs (chains/bitcoin/adapter.py
`_Parents`): one function, its parent fetch a table of sizes (the real fetch runs against btcd
in tests/functional/chains and the withdrawal flows)."""

from __future__ import annotations

import pytest

from chains.bitcoin.adapter import _Parents
from chains.state import Utxo
from node import limits

SMALL = 250
LARGE = limits.CLUSTER_PREV_TX_BYTES_MAX + 1
NEAR_BUDGET = limits.CLUSTER_PREV_TX_BYTES_MAX  # CLUSTER_PREV_TXS_BYTES_MAX // this of them fill the budget


def coin(txid: str, vout: int = 0) -> Utxo:
    return Utxo(txid, vout, "addr", "v", (0, vout), 10_000, 1, False)


CASES = [
    # (case, parent sizes by txid, coins in order, alone_allowed, admitted)
    ("small parents", {"a": SMALL, "b": SMALL}, ["a", "b"], False, ["a", "b"]),
    ("two outputs of one parent: sent once", {"a": SMALL}, ["a", "a:1"], False, ["a", "a:1"]),
    ("a large parent is never in a withdrawal", {"a": LARGE, "b": SMALL}, ["a", "b"], False, ["b"]),
    ("a sweep takes a large parent first, alone", {"a": LARGE, "b": SMALL}, ["a", "a:1", "b"], True, ["a", "a:1"]),
    ("a sweep leaves a later large parent for another sweep", {"a": SMALL, "b": LARGE, "c": SMALL}, ["a", "b", "c"], True, ["a", "c"]),
    ("past the budget a coin waits", {f"t{i}": NEAR_BUDGET for i in range(16)}, [f"t{i}" for i in range(16)], True,
     [f"t{i}" for i in range(limits.CLUSTER_PREV_TXS_BYTES_MAX // NEAR_BUDGET)]),
]


@pytest.mark.parametrize("case,sizes,coins,alone_allowed,admitted", CASES, ids=[c[0] for c in CASES])
def test_parents_stay_within_the_peers_limits(case, sizes, coins, alone_allowed, admitted):
    fetched = []

    def fetch(txid, height):
        fetched.append(txid)
        return b"\x00" * sizes[txid]

    parents = _Parents(fetch)
    got = []
    for name in coins:
        txid, _, vout = name.partition(":")
        if parents.admit(coin(txid, int(vout or 0)), alone_allowed):
            got.append(name)
    assert got == admitted, case
    assert len(fetched) == len(set(fetched)), "each parent fetched once"
    total = parents.total_bytes()
    assert total <= limits.CLUSTER_PREV_TXS_BYTES_MAX
    assert len(parents.prev_txs()) == 1 or max(len(r) for r in parents.prev_txs()) <= limits.CLUSTER_PREV_TX_BYTES_MAX
