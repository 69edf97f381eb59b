"""The fast builder (proofs.tree) agrees with the reference (proofs.mst): on the vector byte
for byte, and on random trees where every account's proof must verify."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs import mst, tree


def test_fast_tree_reproduces_vector(vector):
    inp = vector["inputs"]
    ids = sorted(inp["proof_secrets"])
    specs = [
        mst.LeafSpec(e["index"], e["account_id"], e["part"], tuple(int(x) for x in e["balances"]))
        for e in inp["layout"]
    ]
    t = tree.FastTree(
        bytes.fromhex(inp["snapshot_id"]),
        inp["assets"],
        ids,
        tree.secrets_array([bytes.fromhex(inp["proof_secrets"][a]) for a in ids]),
        tree.layout_from_specs(ids, specs),
    )
    assert [h.tobytes().hex() for h in t.hashes[0]] == vector["expected"]["leaf_hashes"]
    assert {"hash": t.root_hash.hex(), "sums": [str(x) for x in t.root_sums]} == vector["expected"]["root"]
    for n, account in enumerate(ids):
        assert json.dumps(t.proof(n), sort_keys=True) == json.dumps(vector["expected"]["proofs"][account], sort_keys=True)


# Balances: mostly small, some at the top of the 128-bit range (wei) to exercise the carries.
amount = st.one_of(st.integers(0, 10**9), st.integers(0, 2**128 - 1), st.integers(2**64 - 3, 2**64 + 3))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_assets=st.integers(1, 4),
    data=st.data(),
)
def test_random_trees_every_proof_verifies_and_matches_reference(n_assets, data):
    n_accounts = data.draw(st.integers(1, 9), label="n_accounts")
    # Keep totals below 2^128: scale the per-account cap by the account count.
    cap = (2**128 - 1) // n_accounts
    balances = [
        [data.draw(st.integers(0, cap), label="balance") if data.draw(st.booleans()) else data.draw(amount) % (cap + 1)
         for _ in range(n_assets)]
        for _ in range(n_accounts)
    ]
    ids = [f"acct-{i}-é" for i in range(n_accounts)]
    secrets = [os.urandom(32) for _ in ids]
    sid = os.urandom(16)
    assets = [f"A{i}" for i in range(n_assets)]
    layout = tree.plan_layout(tree.limbs_from_ints(balances))
    assert len(layout.leaf_account) == 1 << layout.depth
    t = tree.FastTree(sid, assets, ids, tree.secrets_array(secrets), layout)

    specs = [
        mst.LeafSpec(i, ids[int(layout.leaf_account[i])], int(layout.leaf_part[i]), tuple(b))
        for i, b in enumerate(tree.ints_from_limbs(t.sums[0]))
    ]
    ref = mst.ReferenceTree(sid, assets, dict(zip(ids, secrets)), specs)
    assert ref.root == (t.root_hash, t.root_sums)
    assert t.root_sums == [sum(col) for col in zip(*balances)]
    for n, account in enumerate(ids):
        proof = t.proof(n)
        assert proof == ref.proof(account, balances[n])
        verified = mst.verify_user_proof(json.loads(json.dumps(proof)))
        assert list(verified.account_balances) == balances[n]
        assert len(proof["leaves"]) >= 2
        compact = mst.verify_user_proof(json.loads(json.dumps(mst.to_compact(proof))))  # the same proof, re-encoded
        assert dataclasses.replace(compact, format=mst.FORMAT) == verified


def test_sum_overflow_is_refused():
    balances = tree.limbs_from_ints([[2**127], [2**127]])
    with pytest.raises(tree.SnapshotRefused) as exc:
        tree.FastTree(os.urandom(16), ["BTC"], ["a", "b"], tree.secrets_array([os.urandom(32)] * 2),
                      tree.plan_layout(balances))
    assert exc.value.reason == "sum_overflow"


@pytest.mark.parametrize("bad", [-1, 2**128, 1.5, True])
def test_out_of_range_balance_is_refused(bad):
    with pytest.raises(tree.SnapshotRefused) as exc:
        tree.limbs_from_ints([[bad]])
    assert exc.value.reason == "balance_out_of_range"


def test_split_fills_tree_and_parts_add_up():
    rng = np.random.default_rng(7)  # test data only; the layout's randomness is os.urandom
    balances = [[int(x) for x in rng.integers(0, 2**62, size=3)] for _ in range(1000)]
    layout = tree.plan_layout(tree.limbs_from_ints(balances))
    assert layout.depth == 11  # 2,000 parts -> 2,048 leaves
    counts = np.bincount(layout.leaf_account)
    assert counts.min() >= 2 and counts.sum() == 2048
    order, starts = layout.leaves_of()
    leaf_ints = tree.ints_from_limbs(layout.u_balances[layout.perm])
    for k in range(0, 1000, 37):
        mine = order[starts[k] : starts[k + 1]]
        assert sorted(layout.leaf_part[mine].tolist()) == list(range(len(mine)))
        assert [sum(leaf_ints[i][a] for i in mine) for a in range(3)] == balances[k]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_accounts=st.integers(10, 70), seed=st.integers(0, 2**32 - 1))
def test_larger_random_trees_every_proof_verifies(n_accounts, seed):
    rng = np.random.default_rng(seed)  # test data; the layout's randomness is os.urandom
    balances = [[int(x) for x in rng.integers(0, 2**63, size=2)] for _ in range(n_accounts)]
    ids = [f"a{i}" for i in range(n_accounts)]
    t = tree.FastTree(os.urandom(16), ["X", "Y"], ids, tree.secrets_array([os.urandom(32) for _ in ids]),
                      tree.plan_layout(tree.limbs_from_ints(balances)))
    assert t.root_sums == [sum(b[0] for b in balances), sum(b[1] for b in balances)]
    for n in range(n_accounts):
        assert list(mst.verify_user_proof(t.proof(n)).account_balances) == balances[n]


def test_leaf_order_is_shuffled_and_fresh_each_time():
    """Not a randomness test (that is os.urandom's job): it catches a layout that forgot to
    shuffle, or that shuffles the same way twice."""
    balances = tree.limbs_from_ints([[i] for i in range(512)])
    a, b = tree.plan_layout(balances), tree.plan_layout(balances)
    assert sorted(a.perm.tolist()) == list(range(1024))
    assert not (np.diff(a.leaf_account) >= 0).all()  # not grouped by account
    assert (a.perm != b.perm).any()
