"""The reference implementation reproduces por-vector.json (design/por-format.md) exactly."""

from __future__ import annotations

import json

from proofs import mst


def _reference_tree(vector) -> mst.ReferenceTree:
    inp = vector["inputs"]
    layout = [
        mst.LeafSpec(e["index"], e["account_id"], e["part"], tuple(int(x) for x in e["balances"]))
        for e in inp["layout"]
    ]
    secrets = {a: bytes.fromhex(s) for a, s in inp["proof_secrets"].items()}
    return mst.ReferenceTree(bytes.fromhex(inp["snapshot_id"]), inp["assets"], secrets, layout)


def test_keys_match_vector(vector):
    sid = bytes.fromhex(vector["inputs"]["snapshot_id"])
    for account, secret in vector["inputs"]["proof_secrets"].items():
        assert mst.snapshot_key(bytes.fromhex(secret), sid).hex() == vector["expected"]["user_keys"][account], account


def test_leaf_hashes_and_root_match_vector(vector):
    tree = _reference_tree(vector)
    assert [h.hex() for h, _ in tree.levels[0]] == vector["expected"]["leaf_hashes"]
    root_hash, root_sums = tree.root
    assert {"hash": root_hash.hex(), "sums": [str(x) for x in root_sums]} == vector["expected"]["root"]


def test_proofs_match_vector_byte_for_byte(vector):
    tree = _reference_tree(vector)
    for account, expected in vector["expected"]["proofs"].items():
        balances = [int(x) for x in vector["inputs"]["account_balances"][account]]
        got = tree.proof(account, balances)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True), account


def test_vector_proofs_verify(vector):
    for account, proof in vector["expected"]["proofs"].items():
        verified = mst.verify_user_proof(proof)
        assert verified.account_id == account
        assert [str(x) for x in verified.account_balances] == vector["inputs"]["account_balances"][account]
        assert verified.root_hash == vector["expected"]["root"]["hash"]
