"""The journal: append-only in the database, hash-chained, and verified offline.

One tampered row is detected and named, by the library and by `custody audit verify` /
`custody ledger check` run as separate processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from node import audit, invariants
from node.ledger import TransferCreate as T


def _cli(store, *args) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "api.cli", *args, "--database-url", store.url.render_as_string(hide_password=False)]
    if store.schema:
        argv += ["--schema", store.schema]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _drop_append_only_triggers(conn, dialect):
    # What an insider with the database owner's rights could do first.
    if dialect == "postgresql":
        conn.exec_driver_sql("DROP TRIGGER journal_append_only ON journal")
    else:
        conn.exec_driver_sql("DROP TRIGGER journal_no_update")
        conn.exec_driver_sql("DROP TRIGGER journal_no_delete")


def _some_history(w):
    for i in range(5):
        w.ledger.create_transfers([T(f"m{i}", w.a, w.b, 10 + i, "BTC", 3)], actor=f"operator-{i}")


def test_every_change_is_journaled_with_who_what_when_before_after(world, store):
    w = world
    _some_history(w)
    with store.reading() as conn:
        entries = audit.entries(conn, 0, 500)
        assert audit.verify(conn) is None
    actions = [e.action for e in entries]
    assert actions[:2] == ["ledger.create", "ledger.create"]
    last = entries[-1]
    assert last.actor == "operator-4" and last.action == "transfers.create" and last.at_ns > 0
    [row] = last.body["transfers"]
    assert row[0] == "m4" and row[3] == "14"
    a = last.body["balances"][str(w.a)]
    assert int(a["after"][1]) - int(a["before"][1]) == 14  # A's posted debits, before → after
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


def test_the_database_refuses_to_rewrite_the_journal(world, store):
    for stmt in ("UPDATE journal SET actor = 'mallory' WHERE seq = 1", "DELETE FROM journal WHERE seq = 1"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.exec_driver_sql(stmt)


@pytest.mark.ledger_tampered
def test_one_tampered_row_is_detected_and_named(world, store):
    w = world
    _some_history(w)
    with store.reading() as conn:
        target = [e for e in audit.entries(conn, 0, 500) if e.action == "transfers.create"][-3]
    with store.engine.begin() as conn:
        _drop_append_only_triggers(conn, store.dialect)
        body = json.loads(conn.execute(sa.text("SELECT body FROM journal WHERE seq = :s"), {"s": target.seq}).scalar())
        body["transfers"][0][3] = "1"  # rewrite history: the amount becomes 1
        conn.execute(sa.text("UPDATE journal SET body = :b WHERE seq = :s"), {"b": audit.canonical_json(body), "s": target.seq})
    with store.reading() as conn:
        broken = audit.verify(conn)
    assert broken is not None and (broken.seq, broken.reason) == (target.seq, "hash_mismatch"), broken
    proc = _cli(store, "audit", "verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"first broken link: seq {target.seq} (hash_mismatch)" in proc.stdout, proc.stdout + proc.stderr
    proc = _cli(store, "ledger", "check")
    assert proc.returncode == 1 and "journal_chain_broken" in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.ledger_tampered
def test_a_rehashed_forgery_breaks_the_next_link(world, store):
    """Recomputing the tampered entry's own hash does not help: the next entry names it."""
    w = world
    _some_history(w)
    with store.engine.begin() as conn:
        _drop_append_only_triggers(conn, store.dialect)
        r = conn.execute(sa.text("SELECT * FROM journal WHERE seq = 3")).one()
        forged_actor = "someone-else"
        new_hash = audit.entry_hash(r.prev_hash, r.seq, r.at_ns, forged_actor, r.action, r.body)
        conn.execute(sa.text("UPDATE journal SET actor = :a, hash = :h WHERE seq = 3"), {"a": forged_actor, "h": new_hash})
    with store.reading() as conn:
        broken = audit.verify(conn)
    assert (broken.seq, broken.reason) == (4, "prev_hash_mismatch"), broken


@pytest.mark.ledger_tampered
def test_a_truncated_journal_is_detected(world, store):
    w = world
    _some_history(w)
    with store.engine.begin() as conn:
        _drop_append_only_triggers(conn, store.dialect)
        last = conn.execute(sa.text("SELECT max(seq) FROM journal")).scalar()
        conn.execute(sa.text("DELETE FROM journal WHERE seq = :s"), {"s": last})
    with store.reading() as conn:
        broken = audit.verify(conn)
    assert broken is not None and broken.reason == "head_mismatch", broken


@pytest.mark.ledger_tampered
def test_books_edited_behind_the_ledger_are_caught(world, store):
    """An insider changes a transfer's amount and both balances consistently: every ledger
    still balances, but the journal replay names the transfer."""
    w = world
    _some_history(w)
    with store.engine.begin() as conn:
        amount_type = "NUMERIC(78,0)" if store.dialect == "postgresql" else "TEXT"
        conn.execute(sa.text("UPDATE transfers SET amount = CAST(:v AS " + amount_type + ") WHERE id = 'm0'"), {"v": "1" if store.dialect == "sqlite" else 1})
        for col, acct in (("debits_posted", w.a), ("credits_posted", w.b)):
            cur = conn.execute(sa.text(f"SELECT {col} FROM accounts WHERE id = :i"), {"i": acct}).scalar()
            conn.execute(sa.text(f"UPDATE accounts SET {col} = :v WHERE id = :i"), {"v": str(int(cur) - 9) if store.dialect == "sqlite" else int(cur) - 9, "i": acct})
    names = {v.name for v in invariants.check(store)}
    assert names == {"transfer_differs_from_journal"}, names


def test_cli_on_intact_books(world, store):
    _some_history(world)
    proc = _cli(store, "audit", "verify")
    assert proc.returncode == 0 and "audit verify: ok" in proc.stdout, proc.stdout + proc.stderr
    proc = _cli(store, "ledger", "check")
    assert proc.returncode == 0 and "ledger check: ok" in proc.stdout, proc.stdout + proc.stderr
