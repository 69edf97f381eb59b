"""Deposit crediting benchmark (shared/design/benchmarks.md form).

Measures how fast `Deposits.sync` turns an adapter's stored deposits into ledger credits:
a batch of N deposits to N issued addresses, each first seen already at its depth, so each
costs the full booking (pending transfer, post, deposit wallet <- clearing), its deposit row,
its journal body and its two webhook outbox rows, in bounded batches (DEPOSITS_SYNC_BATCH_MAX).
- project: `sync_deposits_per_s`, deposits credited per second through `Deposits.sync`.
- baseline: the same three transfers per deposit through the ledger's own write path
  (`Ledger.create_transfers`, one call per DEPOSITS_SYNC_BATCH_MAX deposits, as one sync write)
  on a store of the same kind.
  A credit cannot cost less than its ledger transfers, so that is the honest floor;
  **`sync_overhead_ratio`** = baseline deposits/s / sync deposits/s (1.0 = no overhead).
The adapter side is a stand-in that returns prepared `Deposit` values (the chain scan is
measured by bench/chains.py). Rounds alternate project and baseline after a warm-up, each on
a fresh store.

    python bench/deposits.py [--quick] [--pg postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import figure, machine, median, progress  # noqa: E402

BENCH = "deposits"


class Source:
    chain, network = "bitcoin", "regtest"

    def __init__(self):
        self.rows = []

    def address(self, vault_id, path):
        return f"bcrt1qbench{vault_id}{path[0]}x{path[1]}"

    def deposits(self):
        return self.rows


def fresh(url: str | None, tmp: pathlib.Path):
    import sqlalchemy as sa

    from node.customers import Customers
    from node.ledger import Ledger, LedgerKind
    from node.store import open_store

    schema = None
    if url is None:
        url = f"sqlite:///{tmp / (uuid.uuid4().hex + '.db')}"
    else:
        schema = f"bd_{uuid.uuid4().hex[:12]}"
    store = open_store(url, schema=schema)
    ledger = Ledger(store)
    ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="bench")
    Customers(ledger).create_customer("bench", "Bench", actor="bench")

    def drop():
        store.dispose()
        if schema:
            eng = sa.create_engine(url)
            with eng.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            eng.dispose()

    return store, ledger, drop


def run_sync(url, tmp, n: int) -> float:
    from node.deposits import Deposits
    from node.ports import DEPOSIT_CREDITED, Deposit

    store, ledger, drop = fresh(url, tmp)
    try:
        src = Source()
        deps = Deposits(ledger, {"bitcoin": src}, vault_id="hot")
        for i in range(n):  # a handful of addresses, many deposits each
            if i < 8:
                deps.issue_address("bench.main", "BTC", actor="bench")
        addrs = [a.address for a in deps.addresses("bench.main")]
        src.rows = [Deposit("bitcoin", "regtest", "BTC", f"{i:064x}:0", f"{i:064x}", addrs[i % len(addrs)], "hot", (0, i % 8),
                            1_000 + i, 100, "00" * 32, DEPOSIT_CREDITED) for i in range(n)]
        t0 = time.perf_counter()
        booked = 0
        while True:
            r = deps.sync(src)
            booked += r.credited
            if not r.more:
                break
        dt = time.perf_counter() - t0
        assert booked == n, (booked, n)
        return n / dt
    finally:
        drop()


def run_baseline(url, tmp, n: int, batch: int) -> float:
    from node.customers import CODE_DEPOSIT, Customers
    from node.ledger import AccountKind, TransferCreate, TransferFlags
    from node.wallets import Wallets

    store, ledger, drop = fresh(url, tmp)
    try:
        c = Customers(ledger)
        cust = c.customer_account("bench.main", "BTC", actor="bench")
        clearing = c.system_account("BTC", AccountKind.DEPOSIT_CLEARING, actor="bench")
        wallet = Wallets(ledger).create_wallet("deposit:hot:BTC", "hot", "BTC", "deposit", actor="bench").account_id
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            ev = []
            for i in range(start, min(n, start + batch)):
                tid = f"dep_{i:040x}"
                ev += [TransferCreate(tid, clearing, cust, 1_000 + i, "BTC", CODE_DEPOSIT, TransferFlags.PENDING),
                       TransferCreate(f"{tid}:post", pending_id=tid, flags=TransferFlags.POST_PENDING),
                       TransferCreate(f"{tid}:in", wallet, clearing, 1_000 + i, "BTC", CODE_DEPOSIT)]
            ledger.create_transfers(ev, actor="bench")
        return n / (time.perf_counter() - t0)
    finally:
        drop()


def main() -> int:
    from node import limits

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    n, rounds = (1_000, 2) if args.quick else (4_000, 5)
    # One sync write books DEPOSITS_SYNC_BATCH_MAX deposits: the baseline writes the same
    # transfers per write (three per deposit).
    batch = limits.DEPOSITS_SYNC_BATCH_MAX
    progress(f"{BENCH}: {machine()}; {n} deposits per round, {rounds} rounds, {'PostgreSQL' if args.pg else 'SQLite'}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-deposits-"))
    run_sync(args.pg, tmp, n // 10)  # warm-up
    run_baseline(args.pg, tmp, n // 10, batch)
    sync, base = [], []
    for r in range(rounds):
        sync.append(run_sync(args.pg, tmp, n))
        base.append(run_baseline(args.pg, tmp, n, batch))
        progress(f"round {r + 1}: sync {sync[-1]:.0f}/s, ledger alone {base[-1]:.0f}/s")
    figure(BENCH, "baseline_ledger_deposits_per_s", round(median(base)), "1/s")
    figure(BENCH, "sync_deposits_per_s", round(median(sync)), "1/s")
    figure(BENCH, "sync_overhead_ratio", round(median(base) / median(sync), 3), "ratio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
