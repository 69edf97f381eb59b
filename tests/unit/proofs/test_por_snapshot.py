"""Snapshots end to end on real crypto: tree, proofs, Ed25519 header, secp256k1 reserves
signatures (coincurve test keys), history chained by hash, the scheduler."""

from __future__ import annotations

import datetime as dt

import pytest

from proofs import assets as ast
from proofs import header as hdr
from proofs import mst, snapshot, tree
from tests.support import por_world as W

T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def test_snapshot_agrees_with_liabilities_and_every_proof_verifies(tmp_path):
    world = W.make_world(tmp_path)
    header = hdr.verify_signed_header(world.published.signed_header, world.public_key_hex)
    assert header["root"]["sums"] == [str(sum(b[i] for b in W.BALANCES.values())) for i in range(3)]
    assert header["depth"] == 4  # 5 accounts x 2 parts -> 16 leaves
    for account, balances in W.BALANCES.items():
        proof = world.store.proof(world.published.snapshot_id, account)
        verified = mst.verify_user_proof(proof)
        assert verified.account_balances == balances and verified.root_hash == header["root"]["hash"]
    assert world.store.proof(world.published.snapshot_id, "acct-nobody") is None
    got = ast.verify_assets_file(world.published.assets_doc, header)
    assert got.reserves == {"BTC": 2**70 + 160_000_000, "ETH": 3 * 10**18, "USDT": 10**12 + 5_000_001}
    assert got.addresses == {"BTC": 2, "ETH": 1, "USDT": 1}


def test_history_chains_headers_and_keeps_proof_secrets(tmp_path):
    world = W.make_world(tmp_path)
    wallets = W.TestKeyWallets(W.HOLDINGS)
    second = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, world.store, world.key,
                                    T0 + dt.timedelta(hours=1))
    assert second.signed_header["header"]["prev"] == hdr.header_hash(world.published.signed_header["header"])
    hdr.verify_signed_header(second.signed_header, world.public_key_hex, prev=world.published.signed_header)
    with pytest.raises(mst.ProofInvalid) as exc:
        hdr.verify_signed_header(world.published.signed_header, world.public_key_hex, prev=second.signed_header)
    assert exc.value.reason == "header_chain_broken"
    assert [p.seq for p in world.store.history(10)] == [2, 1]
    # Same account, new snapshot: a different key (no linking across snapshots), same secret.
    k1 = world.store.proof(world.published.snapshot_id, "acct-bob")["key"]
    k2 = world.store.proof(second.snapshot_id, "acct-bob")["key"]
    assert k1 != k2


def test_negative_balance_is_clamped_and_reported(tmp_path):
    balances = dict(W.BALANCES, **{"acct-neg": (-5, 1, 0)})
    world = W.make_world(tmp_path, balances=balances, holdings=[])
    header = world.published.signed_header["header"]
    assert header["negative_balances_clamped"] == 1
    assert mst.verify_user_proof(world.store.proof(world.published.snapshot_id, "acct-neg")).account_balances == (0, 1, 0)


def test_scheduler_takes_a_snapshot_only_when_due(tmp_path):
    store = snapshot.SnapshotStore(tmp_path / "s")
    wallets = W.TestKeyWallets(W.HOLDINGS)
    key = W.Ed25519PrivateKey.generate()
    args = (W.TableLiabilities(W.BALANCES), wallets, wallets, store, key)
    assert snapshot.run_scheduled(*args, now=T0, interval_s=3600) is not None
    assert snapshot.run_scheduled(*args, now=T0 + dt.timedelta(minutes=59), interval_s=3600) is None
    assert snapshot.run_scheduled(*args, now=T0 + dt.timedelta(minutes=60), interval_s=3600) is not None
    assert len(store.history(10)) == 2


@pytest.mark.parametrize(
    "balances, reason",
    [
        ({"a": (1, 2)}, "balance_malformed"),  # 2 values for 3 assets
        ({"a": (2**128, 0, 0)}, "balance_out_of_range"),
        ({"a": (2**127, 0, 0), "b": (2**127, 0, 0)}, "sum_overflow"),
        ({}, "account_count_out_of_range"),
    ],
)
def test_bad_liabilities_refused_and_nothing_stored(tmp_path, balances, reason):
    store = snapshot.SnapshotStore(tmp_path / "s")
    wallets = W.TestKeyWallets([])
    with pytest.raises(tree.SnapshotRefused) as exc:
        snapshot.take_snapshot(W.TableLiabilities(balances), wallets, wallets, store, W.Ed25519PrivateKey.generate(), T0)
    assert exc.value.reason == reason
    assert store.latest() is None


def test_a_reserves_signature_from_the_wrong_key_stops_the_snapshot(tmp_path):
    store = snapshot.SnapshotStore(tmp_path / "s")
    wallets = W.TestKeyWallets(W.HOLDINGS)
    wallets.wrong_key_for = {wallets.addresses[0].address}
    with pytest.raises(tree.SnapshotRefused) as exc:
        snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, store, W.Ed25519PrivateKey.generate(), T0)
    assert exc.value.reason == "reserves_signature_invalid"
    assert store.latest() is None


class _MovingBooks:
    """A stand-in for node.customers.Customers (unit test of LedgerLiabilities.freeze only):
    the journal moves between the per-asset reads for the first `unstable` attempts."""

    def __init__(self, unstable: int):
        self.unstable, self.calls = unstable, 0

    def customer_balances_snapshot(self, asset):
        self.calls += 1
        attempt = (self.calls - 1) // 3
        seq = 10 + self.calls if attempt < self.unstable else 99
        return seq, 0, [("c1", {"BTC": 5, "ETH": 7, "USDT": 0}[asset])]


@pytest.mark.parametrize("unstable, outcome", [(0, "ok"), (2, "ok"), (5, "liabilities_not_stable")])
def test_freeze_needs_one_journal_instant(unstable, outcome):
    from proofs import liabilities

    source = liabilities.LedgerLiabilities(_MovingBooks(unstable), W.ASSETS, lambda: W.CHAINS)
    if outcome == "ok":
        frozen = source.freeze()
        assert frozen.balances == {"c1": (5, 7, 0)} and frozen.instant == "journal:99"
    else:
        with pytest.raises(tree.SnapshotRefused) as exc:
            source.freeze()
        assert exc.value.reason == outcome


def test_freeze_rereads_when_heights_move():
    from proofs import liabilities

    heights = iter([W.CHAINS, W.CHAINS[:1], W.CHAINS, W.CHAINS])
    source = liabilities.LedgerLiabilities(_MovingBooks(0), W.ASSETS, lambda: next(heights))
    assert source.freeze().chains == W.CHAINS


def test_snapshot_key_is_sealed_at_rest_and_signs_headers(tmp_path):
    from mpc.sealing import PassphraseKeyProvider, Sealer, SealingError
    from proofs import snapshot_key

    # Low argon2 cost: test only (production uses the provider's defaults).
    sealer = Sealer(PassphraseKeyProvider("correct horse battery staple", key_id="node/2026", time_cost=1, memory_kib=8 * 1024),
                    environment="production")
    blob, public = snapshot_key.new_sealed_key(sealer, "node-1")
    key = snapshot_key.open_sealed_key(blob, sealer, "node-1")
    assert snapshot_key.public_hex(key) == public
    wallets = W.TestKeyWallets(W.HOLDINGS)
    store = snapshot.SnapshotStore(tmp_path / "s")
    published = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, store, key, T0)
    hdr.verify_signed_header(published.signed_header, public)
    with pytest.raises(SealingError):
        snapshot_key.open_sealed_key(blob, sealer, "node-2")  # sealed for another node
    wrong = Sealer(PassphraseKeyProvider("wrong passphrase here", key_id="node/2026", time_cost=1, memory_kib=8 * 1024),
                   environment="production")
    with pytest.raises(SealingError):
        snapshot_key.open_sealed_key(blob, wrong, "node-1")
