"""bench/ledger.py — durable ledger transfers per second, against raw SQL inserts of the same rows.

What it measures: `Ledger.create_transfers` in batches (default 1,000 events per batch, one
durable commit each — SQLite WAL with synchronous=FULL, PostgreSQL synchronous_commit=on), on
  - SQLite, transfers between random pairs of 1,000 funded customer accounts;
  - PostgreSQL, the same;
  - the hot-account case: every transfer touches one omnibus account (the hot wallet pays
    random customers), on PostgreSQL (headline) and on SQLite;
  - and, to justify the single-writer design, 16 concurrent writers each committing one
    transfer at a time on PostgreSQL (what a transaction per request gives), against the same
    16 writers submitting through the group-commit writer (one transaction per group).

Baseline, in the same run, alternating with the ledger after a warm-up: the very same transfer
rows inserted with plain SQL into a table with the same columns and indexes (executemany on
SQLite, COPY on PostgreSQL), one durable commit per batch of the same size — no validation,
no balance checks or updates, no lock, no journal. Every durable ledger has to write at least
these rows, so this is the honest floor; the ratio is what our safety costs on top.

Usage: python bench/ledger.py [--quick] [--pg URL] [--batch N] [--rounds N]
(--pg defaults to CUSTODY_TEST_PG_URL; PostgreSQL figures are required, not skipped.)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from _common import figure, machine, median, progress  # noqa: E402

from node.ledger import AccountCreate, AccountFlags, GroupCommitWriter, Ledger, TransferCreate, TransferResult  # noqa: E402
from node.store import Store, open_store  # noqa: E402

BENCH = "ledger"
ACCOUNTS = 1_000
COLUMNS = "id, debit_account_id, credit_account_id, amount, pending_id, ledger, code, flags, timeout_s, user_data, timestamp_ns"


class Scenario:
    def __init__(self, name: str, store: Store, hot_account: bool, batch: int, seed: int):
        self.name = name
        self.store = store
        self.ledger = Ledger(store)
        self.batch = batch
        self.rng = random.Random(seed)
        self.hot_account = hot_account
        self.n = 0
        L = self.ledger
        L.create_ledger("BTC", 8, "crypto", actor="bench")
        specs = [AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner=f"c{i}") for i in range(ACCOUNTS)]
        specs.append(AccountCreate("BTC", "hot_wallet", AccountFlags.NONE, owner="omnibus"))
        res = L.create_accounts(specs, actor="bench")
        ids = [a for _, a in res]
        self.customers, self.omnibus = ids[:-1], ids[-1]
        fund = [TransferCreate(f"fund-{i}", self.omnibus, a, 10**15, "BTC", 1) for i, a in enumerate(self.customers)]
        assert all(r is TransferResult.ok for r in L.create_transfers(fund, actor="bench"))
        self._make_raw_table()

    def _make_raw_table(self):
        with self.store.engine.begin() as conn:
            if self.store.dialect == "postgresql":
                conn.exec_driver_sql("CREATE TABLE bench_raw_transfers (LIKE transfers INCLUDING ALL)")
            else:
                conn.exec_driver_sql("CREATE TABLE bench_raw_transfers AS SELECT * FROM transfers WHERE 0")
                conn.exec_driver_sql("CREATE UNIQUE INDEX bench_raw_id ON bench_raw_transfers (id)")
                conn.exec_driver_sql("CREATE UNIQUE INDEX bench_raw_pending ON bench_raw_transfers (pending_id)")
                conn.exec_driver_sql("CREATE UNIQUE INDEX bench_raw_ts ON bench_raw_transfers (timestamp_ns)")
                conn.exec_driver_sql("CREATE INDEX bench_raw_dr ON bench_raw_transfers (debit_account_id, timestamp_ns)")
                conn.exec_driver_sql("CREATE INDEX bench_raw_cr ON bench_raw_transfers (credit_account_id, timestamp_ns)")

    def events(self) -> list[TransferCreate]:
        out = []
        for _ in range(self.batch):
            self.n += 1
            if self.hot_account:
                dr, cr = self.omnibus, self.rng.choice(self.customers)
            else:
                dr, cr = self.rng.sample(self.customers, 2)
            out.append(TransferCreate(f"t{self.n}", dr, cr, self.rng.randint(1, 10**6), "BTC", 3))
        return out

    def run_ledger(self, batches: list[list[TransferCreate]]) -> float:
        t0 = time.perf_counter()
        for b in batches:
            results = self.ledger.create_transfers(b, actor="bench")
            assert results[0] is TransferResult.ok and results[-1] is TransferResult.ok
        return sum(len(b) for b in batches) / (time.perf_counter() - t0)

    def run_raw(self, batches: list[list[TransferCreate]]) -> float:
        """The same rows, plain SQL, one durable commit per batch."""
        rows_per_batch = []
        for b in batches:
            ts0 = time.time_ns()
            rows_per_batch.append(
                [(f"raw-{e.id}", e.debit_account_id, e.credit_account_id, str(e.amount), None, e.ledger, e.code, 0, 0, None, ts0 + k)
                 for k, e in enumerate(b)]
            )
        raw = self.store.engine.raw_connection()
        try:
            driver = raw.driver_connection
            t0 = time.perf_counter()
            if self.store.dialect == "postgresql":
                for rows in rows_per_batch:
                    with driver.cursor() as cur:
                        with cur.copy(f"COPY bench_raw_transfers ({COLUMNS}) FROM STDIN") as copy:
                            for r in rows:
                                copy.write_row(r)
                    driver.commit()
            else:
                for rows in rows_per_batch:
                    cur = driver.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    cur.executemany(f"INSERT INTO bench_raw_transfers ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                    cur.execute("COMMIT")
                    cur.close()
            return sum(len(r) for r in rows_per_batch) / (time.perf_counter() - t0)
        finally:
            raw.close()


def measure(sc: Scenario, rounds: int, batches_per_round: int) -> tuple[float, float]:
    progress(f"[{sc.name}] warm-up")
    sc.run_ledger([sc.events()])
    sc.run_raw([sc.events()])
    ours, base = [], []
    for r in range(rounds):
        # Alternate which goes first, so that drift in the machine's load hits both alike.
        work = [[sc.events() for _ in range(batches_per_round)] for _ in range(2)]
        if r % 2 == 0:
            ours.append(sc.run_ledger(work[0]))
            base.append(sc.run_raw(work[1]))
        else:
            base.append(sc.run_raw(work[1]))
            ours.append(sc.run_ledger(work[0]))
        progress(f"[{sc.name}] round {r + 1}/{rounds}: ledger {ours[-1]:,.0f}/s, raw inserts {base[-1]:,.0f}/s")
    return median(ours), median(base)


def concurrent_single(store: Store, writers: int, per_writer: int, grouped: bool, round_: int) -> float:
    """Many writers, one transfer per call: a transaction each, or through the group-commit
    writer (grouped=True)."""
    ledger = Ledger(store)
    tag = f"{'g' if grouped else 's'}{round_}"
    res = ledger.create_accounts(
        [AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner=f"{tag}{i}") for i in range(writers)]
        + [AccountCreate("BTC", "deposit_clearing", owner=f"{tag}-src")],
        actor="bench",
    )
    group_writer = GroupCommitWriter(ledger) if grouped else None
    submit = group_writer.create_transfers if grouped else ledger.create_transfers
    ids = [a for _, a in res]
    src, dsts = ids[-1], ids[:-1]
    barrier = threading.Barrier(writers + 1, timeout=60)

    def work(i):
        barrier.wait()
        for k in range(per_writer):
            [r] = submit([TransferCreate(f"{tag}-{i}-{k}", src, dsts[i], 1, "BTC", 3)], actor=f"bench-{i}")
            assert r is TransferResult.ok, r

    failures: list = []

    def guarded(i):
        try:
            work(i)
        except BaseException as exc:
            failures.append(repr(exc))
            raise

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    rate = writers * per_writer / (time.perf_counter() - t0)
    if failures:
        raise SystemExit(f"bench/ledger.py: a writer failed: {failures[0]}")
    if group_writer is not None:
        group_writer.close()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (same figures, same baseline)")
    ap.add_argument("--pg", default=os.environ.get("CUSTODY_TEST_PG_URL"), help="PostgreSQL URL (default CUSTODY_TEST_PG_URL)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    if not args.pg:
        print("bench/ledger.py: PostgreSQL is required: pass --pg URL or set CUSTODY_TEST_PG_URL (deploy/dev/postgres.sh)", file=sys.stderr)
        return 2
    rounds = args.rounds or (3 if args.quick else 7)
    per_round = 2 if args.quick else 4
    progress(f"machine: {machine()}")
    progress(f"batch {args.batch}, {rounds} rounds of {per_round} batches each, {ACCOUNTS} accounts")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    schemas: list[str] = []
    stores: list[Store] = []

    def sqlite_store(name):
        s = open_store(f"sqlite:///{tmp / name}.db")
        stores.append(s)
        return s

    def pg_store():
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        schemas.append(schema)
        s = open_store(args.pg, schema=schema)
        stores.append(s)
        return s

    out = {}
    try:
        out["sqlite"] = measure(Scenario("sqlite", sqlite_store("pairs"), False, args.batch, 1), rounds, per_round)
        out["postgres"] = measure(Scenario("postgres", pg_store(), False, args.batch, 2), rounds, per_round)
        out["sqlite_hot"] = measure(Scenario("sqlite hot account", sqlite_store("hot"), True, args.batch, 3), rounds, per_round)
        out["postgres_hot"] = measure(Scenario("postgres hot account", pg_store(), True, args.batch, 4), rounds, per_round)
        progress("[postgres] 16 concurrent writers, one transfer per call")
        single_store = pg_store()
        Ledger(single_store).create_ledger("BTC", 8, "crypto", actor="bench")
        per = 10 if args.quick else 40
        singles, groups = [], []
        for r in range(2 if args.quick else 3):  # alternating, like the rounds above
            singles.append(concurrent_single(single_store, 16, per, grouped=False, round_=r))
            groups.append(concurrent_single(single_store, 16, per * 4, grouped=True, round_=r))
            progress(f"[postgres 16 writers] round {r + 1}: transaction each {singles[-1]:,.0f}/s, group commit {groups[-1]:,.0f}/s")
        single, grouped = median(singles), median(groups)
    finally:
        for s in stores:
            s.dispose()
        if schemas:
            import sqlalchemy as sa

            eng = sa.create_engine(args.pg)
            with eng.begin() as conn:
                for schema in schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            eng.dispose()
        shutil.rmtree(tmp, ignore_errors=True)

    figure(BENCH, "sqlite_raw_inserts_per_s", round(out["sqlite"][1]), "rows/s")
    figure(BENCH, "sqlite_ratio", round(out["sqlite"][0] / out["sqlite"][1], 3), "ratio")
    figure(BENCH, "postgres_raw_inserts_per_s", round(out["postgres"][1]), "rows/s")
    figure(BENCH, "postgres_ratio", round(out["postgres"][0] / out["postgres"][1], 3), "ratio")
    figure(BENCH, "sqlite_hot_account_transfers_per_s", round(out["sqlite_hot"][0]), "transfers/s")
    figure(BENCH, "sqlite_hot_account_ratio", round(out["sqlite_hot"][0] / out["sqlite_hot"][1], 3), "ratio")
    figure(BENCH, "hot_account_raw_inserts_per_s", round(out["postgres_hot"][1]), "rows/s")
    figure(BENCH, "hot_account_ratio", round(out["postgres_hot"][0] / out["postgres_hot"][1], 3), "ratio")
    figure(BENCH, "postgres_concurrent_single_transfers_per_s", round(single), "transfers/s")
    figure(BENCH, "postgres_group_commit_single_transfers_per_s", round(grouped), "transfers/s")
    figure(BENCH, "group_commit_vs_transaction_each_ratio", round(grouped / single, 1), "ratio")
    figure(BENCH, "batching_vs_single_ratio", round(out["postgres"][0] / single, 1), "ratio")
    figure(BENCH, "sqlite_transfers_per_s", round(out["sqlite"][0]), "transfers/s")
    figure(BENCH, "postgres_transfers_per_s", round(out["postgres"][0]), "transfers/s")
    figure(BENCH, "hot_account_transfers_per_s", round(out["postgres_hot"][0]), "transfers/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
