"""node/deposits/ over a real scanner's observation log: the Scanner of chains/scanning.py on a
scripted chain (tests/support/scripted_chain.py), its ChainState and the node's store both on
SQLite files or both on PostgreSQL schemas. A reorg across the node's cursor, a crash between
observing and booking, and two scanners (and two syncers) racing: each deposit is booked once,
nothing is lost, and the invariant checker agrees after every test."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from chains.state import ChainState, make_engine
from node import invariants
from node.customers import Customers
from node.deposits import Deposits
from node.ledger import Ledger, LedgerKind
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED
from node.store import open_store
from node.store.api_models import webhook_events
from tests.support.scripted_chain import ScriptedChain

DEPTH = 3
SYNC_THREADS = 4
SYNC_ROUNDS = 5
JOIN_DEADLINE_S = 60


class LogWorld:
    def __init__(self, store, state_engine):
        self.store = store
        self.engine = state_engine
        ledger = Ledger(store)
        ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="test")
        Customers(ledger).create_customer("zoe", "Zoe", actor="test")
        self.ledger = ledger
        self.chain = self.scanner()
        self.deps = self.node()
        self.addr = self.deps.issue_address("zoe.main", "BTC", actor="test").address

    def scanner(self) -> ScriptedChain:
        """A scanner process on the chain state (all share one scripted node: `blocks`)."""
        c = ScriptedChain(ChainState(self.engine, "bitcoin:regtest"), confirmations=DEPTH, asset="BTC", chain="bitcoin",
                          network="regtest")
        if hasattr(self, "chain"):
            c.blocks = self.chain.blocks
        return c

    def node(self) -> Deposits:
        """A node process on the same store."""
        return Deposits(Ledger(self.store), {"bitcoin": self.chain}, vault_id="hot")

    def pay(self, did: str, amount: int):
        return (did, amount, self.addr)

    def records(self) -> list[tuple[str, int, str]]:
        return sorted((d.chain_deposit_id, d.epoch, d.status) for d in self.deps.list("zoe.main", limit=500))

    def balance(self) -> tuple[int, int]:
        from node.clients import ClientOps

        for b in ClientOps(self.store).balances("zoe.main"):
            if b.asset == "BTC":
                return b.posted, b.pending_in
        return 0, 0

    def outbox(self) -> list[str]:
        import json

        with self.store.reading() as conn:
            rows = conn.execute(sa.select(webhook_events.c.type, webhook_events.c.payload).order_by(webhook_events.c.seq))
            return [f"{r.type} {json.loads(r.payload)['data']['chain_deposit_id']}" for r in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def lw(request, tmp_path):
    drops = []
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'node.db'}")
        engine = make_engine(f"sqlite:///{tmp_path / 'chains.db'}")
    else:
        url = request.getfixturevalue("pg_url")
        node_schema, chain_schema = f"n_{uuid.uuid4().hex[:12]}", f"c_{uuid.uuid4().hex[:12]}"
        store = open_store(url, schema=node_schema)
        admin = make_engine(url)
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{chain_schema}"')
        engine = make_engine(url).execution_options(schema_translate_map={None: chain_schema})
        drops = [node_schema, chain_schema]
    world = LogWorld(store, engine)
    yield world
    violations = invariants.check(store)
    store.dispose()
    engine.dispose()
    if drops:
        with admin.begin() as c:
            for s in drops:
                c.exec_driver_sql(f'DROP SCHEMA "{s}" CASCADE')
        admin.dispose()
    assert not violations, violations


def test_a_reorg_across_the_cursor_voids_and_flags_what_was_booked_before_it(lw):
    chain, deps = lw.chain, lw.deps
    chain.extend(2)  # h0, h1
    chain.extend(1, [lw.pay("old", 1_000)])  # h2
    chain.extend(3)  # h3..h5: "old" at depth
    chain.extend(1, [lw.pay("young", 2_000)])  # h6
    chain.scan()
    r = deps.sync(chain)
    assert (r.pending, r.credited) == (2, 1)
    cursor = deps.cursor("bitcoin", "regtest")
    assert (cursor.seq, cursor.tip_height) == (2, 6), "both consumed"
    chain.extend(1)  # h7: a pass with nothing new in the log moves nothing
    chain.scan()
    assert deps.sync(chain).total == 0
    # A reorg from h1: both deposits were booked from entries before the cursor.
    chain.reorg(6, 7, tag="b")  # h2..h7 replaced by h2b..h8b
    chain.blocks[3] = (chain.blocks[3][0], [lw.pay("young", 2_000)])  # "young" mined again at h3b
    r = chain.scan()
    assert r.rolled_back_to == 1
    r = deps.sync(chain)
    assert (r.flagged, r.voided, r.pending, r.credited) == (1, 1, 1, 1), "young again at h3b is at depth at h8b"
    assert lw.records() == [("old", 1, DEPOSIT_REORGED_AFTER_CREDIT), ("young", 1, DEPOSIT_VOIDED),
                            ("young", 2, DEPOSIT_CREDITED)]
    assert lw.balance() == (3_000, 0), "the flagged credit is kept for staff, the new one posted"
    assert deps.cursor("bitcoin", "regtest").seq == 4
    assert deps.sync(chain).total == 0


def test_a_crash_between_observing_and_booking_loses_nothing_and_books_nothing_twice(lw):
    chain = lw.chain
    chain.extend(1, [lw.pay("d1", 5_000)])
    chain.extend(DEPTH - 1)
    chain.scan()  # observed and committed; the node process dies before its pass
    crashing = lw.node()

    def crash(tx):
        raise RuntimeError("killed mid-write")

    lw.store.before_commit_hook = crash
    with pytest.raises(RuntimeError):
        crashing.sync(chain)
    lw.store.before_commit_hook = None
    assert (lw.records(), lw.balance(), crashing.cursor("bitcoin", "regtest").seq) == ([], (0, 0), 0), "nothing half-booked"
    restarted = lw.node()  # a new process
    r = restarted.sync(chain)
    assert (r.pending, r.credited) == (1, 1)
    assert lw.records() == [("d1", 1, DEPOSIT_CREDITED)] and lw.balance() == (5_000, 0)
    assert lw.node().sync(chain).total == 0 and restarted.sync(chain).total == 0, "booked once"
    assert lw.outbox() == ["deposit.pending d1", "deposit.credited d1"]


def test_two_scanners_and_two_syncers_racing_book_each_deposit_once(lw):
    first, second = lw.chain, lw.scanner()
    first.extend(1, [lw.pay("d1", 1_000)])
    fetch = second._fetch_blocks

    def racing(start, end):
        fetched = list(fetch(start, end))
        first.scan()  # the other scanner applies the same block first
        yield from fetched

    second._fetch_blocks = racing
    assert second.scan().events == (), "the stale scanner observes nothing"
    # Two syncers: one reads its page, the other books the same page meanwhile.
    a, b = lw.node(), lw.node()
    read = second.observations

    def stale_page(after_seq, limit):
        page = read(after_seq, limit)
        assert b.sync(first).pending == 1
        return page

    second.observations = stale_page
    assert a.sync(second).total == 0, "the stale page is met under the lock: nothing booked twice"
    second.observations = read
    # Then free-running: every thread scans and syncs, on its own scanner and node.
    for i in range(2, 6):
        first.extend(1, [lw.pay(f"d{i}", 1_000 * i)])
    first.extend(DEPTH)
    errors: list[BaseException] = []

    def run():
        try:
            scanner, node = lw.scanner(), lw.node()
            for _ in range(SYNC_ROUNDS):
                scanner.scan()
                node.sync(scanner)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(SYNC_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_DEADLINE_S)
    assert not [t for t in threads if t.is_alive()] and not errors, errors
    lw.chain.scan()
    lw.deps.sync(lw.chain)
    assert lw.records() == [(f"d{i}", 1, DEPOSIT_CREDITED) for i in range(1, 6)]
    assert lw.balance() == (15_000, 0)
    events = lw.outbox()
    assert sorted(events) == sorted([f"deposit.{t} d{i}" for i in range(1, 6) for t in ("pending", "credited")]), events
    assert [o.deposit_id for o in lw.chain.observations(0, 100).items] == [f"d{i}" for i in range(1, 6)], "observed once"


def test_a_pending_deposit_is_read_by_index_not_by_history(lw):
    """The pass reads the cursor, the head, what is new and the pending ones due: a deposit
    credited long ago is never read again."""
    chain, deps = lw.chain, lw.deps
    chain.extend(1, [lw.pay("d1", 1_000)])
    chain.extend(DEPTH)
    chain.scan()
    deps.sync(chain)
    chain.extend(5)
    chain.scan()
    r = deps.sync(chain)
    assert (r.total, r.rows_read, r.observations) == (0, 2, 0), "cursor and head only"
    chain.extend(1, [lw.pay("d2", 2_000)])
    chain.scan()
    r = deps.sync(chain)
    assert (r.pending, r.observations) == (1, 1)
    assert lw.records() == [("d1", 1, DEPOSIT_CREDITED), ("d2", 1, DEPOSIT_PENDING)]


def test_a_batch_is_confirmed_against_the_tip_only_when_no_rollback_follows_it(lw, monkeypatch):
    from node import limits

    monkeypatch.setattr(limits, "DEPOSITS_SYNC_BATCH_MAX", 1)
    monkeypatch.setattr(limits, "DEPOSITS_SYNC_PASSES_MAX", 1)
    chain, deps = lw.chain, lw.deps
    chain.extend(1)  # h0
    chain.extend(1, [lw.pay("early", 1_000)])  # h1
    chain.extend(1, [lw.pay("late", 2_000)])  # h2
    chain.extend(DEPTH)  # at depth on this branch
    chain.scan()
    # Nothing follows "early" but more sightings: its batch of one is at depth against the tip.
    r = deps.sync(chain)
    assert (r.pending, r.credited, r.more) == (1, 1, True)
    chain.reorg(DEPTH + 1, DEPTH + 3, tag="b")  # h2.. replaced: "late" leaves; the tip is higher than before
    chain.scan()
    # "late" is next, and a rollback follows it: the (later, higher) tip says nothing of its block.
    r = deps.sync(chain)
    assert (r.pending, r.credited, r.more) == (1, 0, True), "never credited against a tip it is not under"
    r = deps.sync(chain)
    assert (r.voided, r.flagged, r.more) == (1, 0, False)
    assert lw.records() == [("early", 1, DEPOSIT_CREDITED), ("late", 1, DEPOSIT_VOIDED)]
