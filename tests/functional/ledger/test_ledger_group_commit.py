"""The group-commit writer: many threads submit small batches; one thread commits them in
groups. Each caller gets exactly its own results, and the books hold (checker after the test)."""

from __future__ import annotations

import threading

import pytest

from node import audit
from node.ledger import GroupCommitWriter, WriterClosed
from node.ledger import TransferCreate as T
from node.ledger import TransferFlags as F
from node.ledger import TransferResult as R


def test_64_concurrent_holds_through_one_writer(world, store):
    w = world
    writer = GroupCommitWriter(w.ledger)
    results = [None] * 64
    barrier = threading.Barrier(64, timeout=60)

    def submit(i):
        barrier.wait()
        results[i] = writer.create_transfers([T(f"hold-{i}", w.a, w.hot, 37, "BTC", 2, F.PENDING)], actor=f"api-{i}")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    writer.close()
    flat = [r for rs in results for r in rs]
    assert flat.count(R.ok) == 1000 // 37
    assert set(flat) == {R.ok, R.exceeds_available_balance}
    assert w.ledger.balance(w.a).available_credit_balance == 1000 - 27 * 37
    with store.reading() as conn:
        entries = [e for e in audit.entries(conn, 0, 500) if e.action == "transfers.create" and "submitted_by" in e.body]
    # A group that changed nothing (every hold refused) writes no journal entry; every caller
    # whose hold was taken is named in the entry of its group.
    journaled = {a for e in entries for a, _ in e.body["submitted_by"]}
    assert {f"api-{i}" for i, rs in enumerate(results) if rs == [R.ok]} <= journaled
    assert len(entries) <= writer.groups_committed < 64, "no two submissions were ever grouped"


def test_each_submission_keeps_its_own_semantics(world):
    w = world
    writer = GroupCommitWriter(w.ledger)
    try:
        # Same id from two callers: the first is ok, the retry is `exists`.
        assert writer.create_transfers([T("x", w.a, w.b, 10, "BTC", 3)], actor="c1") == [R.ok]
        assert writer.create_transfers([T("x", w.a, w.b, 10, "BTC", 3)], actor="c2") == [R.exists]
        # A failed chain fails only its own submission.
        assert writer.create_transfers(
            [T("l1", w.a, w.b, 10, "BTC", 3, F.LINKED), T("l2", w.a, w.b, 10**9, "BTC", 3)], actor="c3"
        ) == [R.linked_event_failed, R.exceeds_available_balance]
        # An open chain is committed alone and reported as such.
        assert writer.create_transfers([T("o1", w.a, w.b, 10, "BTC", 3, F.LINKED)], actor="c4") == [R.linked_event_chain_open]
        with pytest.raises(ValueError):
            writer.create_transfers([], actor="c5")
    finally:
        writer.close()
    with pytest.raises(WriterClosed):
        writer.create_transfers([T("late", w.a, w.b, 1, "BTC", 3)], actor="c6")
    assert set(w.ledger.lookup_transfers(["x", "l1", "l2", "o1", "late"])) == {"x"}
