"""Concurrent writers: 64 holds racing against one balance, from separate engines (separate
connection pools, as separate API replicas would be). Exactly the affordable ones succeed and
the balance never goes below zero; concurrent transfers lose no update (the checker after the
test recomputes every balance from the transfers)."""

from __future__ import annotations

import random
import threading

from node.ledger import Ledger
from node.ledger import TransferCreate as T
from node.ledger import TransferFlags as F
from node.ledger import TransferResult as R

WRITERS = 64
ENGINES = 4


def _race(stores, store, fn_for):
    """Runs fn_for(i, ledger) in WRITERS threads over ENGINES engines, all released together."""
    ledgers = [Ledger(stores.reopen(store, pool_size=4)) for _ in range(ENGINES)]
    barrier = threading.Barrier(WRITERS, timeout=60)
    results: list = [None] * WRITERS
    errors: list = []

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn_for(i, ledgers[i % ENGINES])
        except BaseException as exc:  # reported below, with the thread's index
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=worker, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer is stuck"
    assert not errors, errors
    return results


def test_64_concurrent_holds_against_one_balance(world, stores, store):
    w = world
    hold = 37  # 1,000 // 37 = 27 holds fit, with 1 sat left over
    results = _race(
        stores, store,
        lambda i, ledger: ledger.create_transfers([T(f"hold-{i}", w.a, w.hot, hold, "BTC", 2, F.PENDING)], actor=f"writer-{i}")[0],
    )
    ok = [i for i, r in enumerate(results) if r is R.ok]
    refused = [r for r in results if r is not R.ok]
    assert len(ok) == 1000 // hold, f"{len(ok)} holds succeeded, {1000 // hold} were affordable"
    assert set(refused) == {R.exceeds_available_balance}
    a = w.ledger.balance(w.a)
    assert a.debits_pending == len(ok) * hold
    assert a.available_credit_balance == 1000 - len(ok) * hold >= 0


def test_concurrent_transfers_lose_no_update(world, stores, store):
    w = world
    # Give B its own funds so that money flows both ways.
    assert w.ledger.create_transfers([T("fund-b", w.hot, w.b, 1000, "BTC", 1)], actor="t") == [R.ok]

    def run(i, ledger):
        rng = random.Random(i)
        out = []
        for k in range(5):
            dr, cr = (w.a, w.b) if rng.random() < 0.5 else (w.b, w.a)
            amount = rng.randint(1, 120)
            [r] = ledger.create_transfers([T(f"x-{i}-{k}", dr, cr, amount, "BTC", 3)], actor=f"writer-{i}")
            out.append((dr, amount, r))
        return out

    results = _race(stores, store, run)
    moved_a = sum((-amt if dr == w.a else amt) for rs in results for dr, amt, r in rs if r is R.ok)
    bal = w.ledger.balances([w.a, w.b])
    assert bal[w.a].posted_credit_balance == 1000 + moved_a
    assert bal[w.b].posted_credit_balance == 1000 - moved_a
    assert bal[w.a].posted_credit_balance >= 0 and bal[w.b].posted_credit_balance >= 0
