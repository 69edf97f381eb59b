"""A snapshot agrees with the ledger to the unit: real books (node.ledger on SQLite, the one
write path), customers with BTC and wei balances beyond 2^64, internal transfers and a pending
hold; every customer's proof verifies and carries exactly the ledger's balance."""

from __future__ import annotations

import datetime as dt
import random

import sqlalchemy as sa

from node import invariants
from node.customers import Customers
from node.ledger import Ledger, TransferCreate, TransferFlags
from node.ports import ChainHeight
from node.store import open_store
from node.store.models import accounts
from node.wallets import Wallets
from proofs import liabilities, mst, snapshot
from tests.support import por_world as W

ACTOR = "test"


def test_snapshot_agrees_with_the_ledger_to_the_unit(tmp_path):
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    store = open_store(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        ledger = Ledger(store)
        ledger.create_ledger("BTC", 8, "crypto", actor=ACTOR)
        ledger.create_ledger("ETH", 18, "crypto", actor=ACTOR)
        ledger.create_ledger("USDT", 6, "crypto", actor=ACTOR)
        customers, wallets = Customers(ledger), Wallets(ledger)
        hot = {a: wallets.create_wallet(f"hot-{a}", "vault-hot", a, "hot", actor=ACTOR).account_id for a in ("BTC", "ETH", "USDT")}
        expected: dict[str, list[int]] = {}
        events = []
        for i in range(40):
            cid = f"cust-{i:03d}"
            customers.create_customer(cid, f"Customer {i}", actor=ACTOR)
            subs = [f"{cid}.main", customers.create_sub_account(cid, "trading", actor=ACTOR)]
            expected[cid] = [0, 0, 0]
            for a, asset in enumerate(("BTC", "ETH", "USDT")):
                for sub in subs:
                    amount = rng.choice([0, rng.randrange(1, 10**9), rng.randrange(2**64, 2**90)])
                    if amount == 0:
                        continue
                    acct = customers.customer_account(sub, asset, actor=ACTOR)
                    events.append(TransferCreate(f"dep-{sub}-{asset}", hot[asset], acct, amount, asset, 1))
                    expected[cid][a] += amount
        results = ledger.create_transfers(events, actor=ACTOR)
        assert {r.value for r in results} == {"ok"}, results
        # Moves that change who holds what, but not the total: an internal transfer, a hold.
        src = next(c for c in expected if expected[c][0] >= 2)
        dst = next(c for c in expected if c != src)
        moved = expected[src][0] // 2
        sub_with_btc = next(s for s in (f"{src}.main", f"{src}.trading") if customers.balances(s).get("BTC", 0) >= moved)
        assert customers.internal_transfer("move-1", sub_with_btc, f"{dst}.main", "BTC", moved, actor=ACTOR).ok
        expected[src][0] -= moved
        expected[dst][0] += moved
        hold_sub = next(s for c in expected for s in (f"{c}.main",) if customers.balances(s).get("ETH", 0) > 0)
        hold = ledger.create_transfers(
            [TransferCreate("hold-1", customers.customer_account(hold_sub, "ETH", actor=ACTOR), hot["ETH"], 1, "ETH", 2,
                            flags=TransferFlags.PENDING, timeout_s=3600)], actor=ACTOR)
        assert [r.value for r in hold] == ["ok"]  # pending: still owed, still in the posted balance

        heights = (ChainHeight("bitcoin", "regtest", 812, "00" * 32), ChainHeight("ethereum", "1337", 4501, "ab" * 32))
        source = liabilities.LedgerLiabilities(customers, W.ASSETS, lambda: heights)
        snaps = snapshot.SnapshotStore(tmp_path / "snapshots")
        wallets_keys = W.TestKeyWallets(W.HOLDINGS)
        published = snapshot.take_snapshot(source, wallets_keys, wallets_keys, snaps, W.Ed25519PrivateKey.generate(),
                                           dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc))
        header = published.signed_header["header"]
        assert header["chains"][0]["height"] == 812

        # Totals against an independent SQL sum over the customer accounts.
        with store.reading() as conn:
            rows = conn.execute(sa.select(accounts.c.ledger, accounts.c.credits_posted, accounts.c.debits_posted)
                                .where(accounts.c.kind == "customer")).all()
        sql_totals = {a: 0 for a in ("BTC", "ETH", "USDT")}
        for r in rows:
            sql_totals[r.ledger] += int(r.credits_posted) - int(r.debits_posted)
        assert header["root"]["sums"] == [str(sql_totals[a]) for a in ("BTC", "ETH", "USDT")]
        assert header["root"]["sums"] == [str(sum(v[a] for v in expected.values())) for a in range(3)]

        for cid, balances in expected.items():
            verified = mst.verify_user_proof(snaps.proof(published.snapshot_id, cid))
            ledger_view = [sum(customers.balances(s).get(asset, 0) for s in customers.sub_accounts(cid))
                           for asset in ("BTC", "ETH", "USDT")]
            assert list(verified.account_balances) == balances == ledger_view, cid
        assert invariants.check(store) == []
    finally:
        store.dispose()
