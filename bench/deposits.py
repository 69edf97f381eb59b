"""Deposit crediting benchmark (shared/design/benchmarks.md form).

Booking: how fast `Deposits.sync` turns a chain's observation log into ledger credits: N
payments to issued addresses appended to a real ChainState log (chains_observations), each
first seen already at its depth, so each costs the full booking (pending transfer, post,
deposit wallet <- clearing), its deposit row, its journal body and its two webhook outbox rows,
in bounded batches (DEPOSITS_SYNC_BATCH_MAX).
- project: `sync_deposits_per_s`, deposits credited per second through `Deposits.sync`.
- baseline: the same three transfers per deposit through the ledger's own write path
  (`Ledger.create_transfers`, one call per DEPOSITS_SYNC_BATCH_MAX deposits, as one sync write)
  on a store of the same kind.
  A credit cannot cost less than its ledger transfers, so that is the honest floor;
  **`sync_overhead_ratio`** = baseline deposits/s / sync deposits/s (1.0 = no overhead).

Idle pass (issue 18): one `Deposits.sync` with nothing new, on a node holding 10,000, 100,000
and 1,000,000 past deposits (credited and swept) and a chain log of as many entries, the
cursor at its end; the history is built by bulk SQL (executemany), not by booking it.
- `idle_pass_ms_<n>`: median pass (the histories are built first, then passed over in turn);
  `idle_rows_read_<n>`: rows the pass read (its report).
- **`history_pass_ratio`** = idle pass at the largest history / at the smallest (target <= 1.5).
- `confirm_passes_after_depth`: passes it takes, once a new deposit's block reaches its
  depth, to credit it (target 1), measured on the largest history; `confirm_pass_ms` its time.
- `book_on_history_per_s_<n>`: booking BOOK_ON_HISTORY new deposits on top of the smallest and
  the largest history (before issue 18: 1,000 took 0.2 s, 100,000 took 125 s).

The chain side is a real ChainState read through the Scanner's `observations` (the block scan
itself is measured by bench/chains.py). Booking rounds alternate project and baseline after a
warm-up, each on a fresh store.

    python bench/deposits.py [--quick] [--pg postgresql+psycopg://…] [--histories 10000,100000,1000000]
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


DEPTH = 6
HISTORY_CHUNK_ROWS = 10_000  # rows per executemany when building a history
BOOK_ON_HISTORY = 2_560  # new deposits booked on top of a history (ten full batches)
IDLE_PASSES = 31  # passes timed per history (alternating between the histories)


def chain_state(url: str | None, tmp: pathlib.Path):
    """A ChainState (its own SQLite file, or a PostgreSQL schema) and its drop()."""
    from chains.state import ChainState, make_engine

    if url is None:
        engine = make_engine(f"sqlite:///{tmp / (uuid.uuid4().hex + '-chains.db')}")
        return ChainState(engine, "bitcoin:regtest"), engine.dispose
    schema = f"bc_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(url).execution_options(schema_translate_map={None: schema})

    def drop():
        engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    return ChainState(engine, "bitcoin:regtest"), drop


def source(state):
    """The adapter side: the real log read (chains.scanning.Scanner.observations), no node."""
    from chains.scanning import Scanner

    class Source(Scanner):
        chain, network = "bitcoin", "regtest"

        def __init__(self):
            self.state = state
            self.confirmations = {"BTC": DEPTH}

        def address(self, vault_id, path):
            return f"bcrt1qbench{vault_id}{path[0]}x{path[1]}"

    return Source()


def advance(state, to_height: int, rows=()) -> None:
    """The scanner's writes for blocks up to `to_height`: their hashes, then `rows` seen in the last."""
    with state.begin() as st:
        tip = st.tip()
        for h in range((tip[0] + 1) if tip else to_height, to_height + 1):
            st.put_block(h, f"{h:064x}", 10_000)
        st.observe(list(rows))


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
    from chains.state import DepositRow
    from node.deposits import Deposits

    store, ledger, drop = fresh(url, tmp)
    state, drop_state = chain_state(url, tmp)
    try:
        src = source(state)
        deps = Deposits(ledger, {"bitcoin": src}, vault_id="hot")
        for _ in range(8):  # a handful of addresses, many deposits each
            deps.issue_address("bench.main", "BTC", actor="bench")
        addrs = [a.address for a in deps.addresses("bench.main")]
        advance(state, 100, [DepositRow(f"{i:064x}:0", "BTC", f"{i:064x}", addrs[i % len(addrs)], "hot", (0, i % 8),
                                        1_000 + i, 100, f"{100:064x}") for i in range(n)])
        advance(state, 100 + DEPTH - 1)  # at depth when first seen
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
        drop_state()


def build_history(store, state, n: int, addrs: list) -> int:
    """n credited, swept deposits in the node and n "seen" entries in the chain log, the cursor
    at the end, by bulk SQL. Returns the tip height."""
    from chains.state import blocks, heads, observations
    from node.deposits import deposit_record_id
    from node.store.deposit_models import deposit_cursors, deposits

    per_block = 100
    tip = n // per_block + DEPTH + 1
    for start in range(0, n, HISTORY_CHUNK_ROWS):
        node_rows, log_rows = [], []
        for i in range(start, min(n, start + HISTORY_CHUNK_ROWS)):
            did, h = f"{i:064x}:0", i // per_block
            a = addrs[i % len(addrs)]
            node_rows.append(dict(id=deposit_record_id("bitcoin", "regtest", did, 1), chain="bitcoin", network="regtest",
                                  chain_deposit_id=did, epoch=1, asset="BTC", txid=f"{i:064x}", address=a.address,
                                  address_id=a.id, sub_account_id=a.sub_account_id, vault_id="hot", amount=1_000 + i,
                                  block_height=h, block_hash=f"{h:064x}", status="credited", review=None,
                                  swept_by=f"wd_{i // 1000}", created_at_ns=i + 1, updated_at_ns=i + 1))
            log_rows.append(dict(chain_id="bitcoin:regtest", seq=i + 1, kind="seen", deposit_id=did, asset="BTC",
                                 txid=f"{i:064x}", address=a.address, vault_id="hot", path=f"0/{a.path[1]}",
                                 amount=1_000 + i, height=h, block_hash=f"{h:064x}"))
        with store.engine.begin() as c:
            c.execute(deposits.insert(), node_rows)
        with state.engine.begin() as c:
            c.execute(observations.insert(), log_rows)
        progress(f"history: {min(n, start + HISTORY_CHUNK_ROWS)}/{n}")
    with state.engine.begin() as c:
        c.execute(blocks.insert(), [dict(chain_id="bitcoin:regtest", height=h, hash=f"{h:064x}") for h in range(tip - 50, tip + 1)])
        c.execute(heads.insert().values(chain_id="bitcoin:regtest", last_seq=n, tip_height=tip, tip_hash=f"{tip:064x}"))
    with store.engine.begin() as c:
        c.execute(deposit_cursors.insert().values(chain="bitcoin", network="regtest", seq=n, tip_height=tip, updated_at_ns=n))
    if store.dialect == "postgresql":
        with store.engine.connect() as c:
            c.exec_driver_sql("ANALYZE deposits")
            c.commit()
        schema = state.engine.get_execution_options()["schema_translate_map"][None]  # (raw SQL is not translated)
        with state.engine.connect() as c:
            c.exec_driver_sql(f'ANALYZE "{schema}".chains_observations')
            c.commit()
    return tip


def idle_world(url, tmp, n: int):
    """A node and a chain log holding a history of n: (deps, source, state, tip, addresses, drop)."""
    from node.deposits import Deposits

    store, ledger, drop = fresh(url, tmp)
    state, drop_state = chain_state(url, tmp)
    src = source(state)
    deps = Deposits(ledger, {"bitcoin": src}, vault_id="hot")
    addrs = [deps.issue_address("bench.main", "BTC", actor="bench") for _ in range(8)]
    t0 = time.perf_counter()
    tip = build_history(store, state, n, addrs)
    progress(f"history of {n}: built in {time.perf_counter() - t0:.1f}s")

    def drop_all():
        drop()
        drop_state()

    return deps, src, state, tip, addrs, drop_all


def idle_pass(deps, src) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = deps.sync(src)
    dt = time.perf_counter() - t0
    assert r.total == 0 and not r.more, r
    return dt, r.rows_read


def confirm_after_depth(deps, src, state, tip, addrs) -> tuple[int, float]:
    """A new deposit one block above the tip, then its block to depth: the passes (and the time
    of the last) until it is credited."""
    from chains.state import DepositRow

    a = addrs[0]
    advance(state, tip + 1, [DepositRow("f" * 64 + ":0", "BTC", "f" * 64, a.address, "hot", a.path, 123_456, tip + 1,
                                        f"{tip + 1:064x}")])
    assert deps.sync(src).pending == 1
    advance(state, tip + DEPTH)  # the block reaches its depth
    passes = 0
    while True:
        passes += 1
        t0 = time.perf_counter()
        credited = deps.sync(src).credited
        dt = time.perf_counter() - t0
        if credited == 1 or passes > DEPTH:
            return passes, dt


def book_on_history(deps, src, state, tip, addrs, n: int) -> float:
    """Deposits/s booking n new deposits (first seen at depth) on top of the history."""
    from chains.state import DepositRow

    rows = [DepositRow(f"e{i:063x}:0", "BTC", f"e{i:063x}", addrs[i % len(addrs)].address, "hot", addrs[i % len(addrs)].path,
                       1_000 + i, tip + 1, f"{tip + 1:064x}") for i in range(n)]
    advance(state, tip + 1, rows)
    advance(state, tip + DEPTH)
    t0 = time.perf_counter()
    booked = 0
    while booked < n:
        booked += deps.sync(src).credited
    return n / (time.perf_counter() - t0)


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
    ap.add_argument("--histories", default="10000,100000,1000000", help="past deposits for the idle pass")
    ap.add_argument("--skip-booking", action="store_true", help="the idle pass only")
    args = ap.parse_args()
    n, rounds = (1_000, 2) if args.quick else (4_000, 5)
    # One sync write books DEPOSITS_SYNC_BATCH_MAX deposits: the baseline writes the same
    # transfers per write (three per deposit).
    batch = limits.DEPOSITS_SYNC_BATCH_MAX
    progress(f"{BENCH}: {machine()}; {n} deposits per round, {rounds} rounds, {'PostgreSQL' if args.pg else 'SQLite'}")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-deposits-"))
    histories = sorted(int(h) for h in args.histories.split(","))
    worlds = {h: idle_world(args.pg, tmp, h) for h in histories}
    try:
        times: dict[int, list[float]] = {h: [] for h in histories}
        rows: dict[int, set[int]] = {h: set() for h in histories}
        for h in histories:  # warm-up
            idle_pass(*worlds[h][:2])
        for _ in range(IDLE_PASSES):  # alternating, so that load on the machine hits each alike
            for h in histories:
                dt, n_rows = idle_pass(*worlds[h][:2])
                times[h].append(dt)
                rows[h].add(n_rows)
        for h in histories:
            progress(f"idle pass at {h} past deposits: {median(times[h]) * 1000:.2f} ms, {max(rows[h])} rows read")
            figure(BENCH, f"idle_pass_ms_{h}", round(median(times[h]) * 1000, 3), "ms")
            figure(BENCH, f"idle_rows_read_{h}", max(rows[h]), "rows")
        figure(BENCH, "history_pass_ratio", round(median(times[histories[-1]]) / median(times[histories[0]]), 3), "ratio")
        deps, src, state, tip, addrs, _ = worlds[histories[-1]]
        passes, dt = confirm_after_depth(deps, src, state, tip, addrs)
        figure(BENCH, "confirm_passes_after_depth", passes, "passes")
        figure(BENCH, "confirm_pass_ms", round(dt * 1000, 3), "ms")
        for h in (histories[0], histories[-1]):  # booking does not slow down with history either
            d, sr, st, t, ad, _ = worlds[h]
            if h == histories[-1]:
                t += DEPTH  # (the confirm step above moved it)
            rate = book_on_history(d, sr, st, t, ad, BOOK_ON_HISTORY)
            progress(f"booking {BOOK_ON_HISTORY} on a history of {h}: {rate:.0f}/s")
            figure(BENCH, f"book_on_history_per_s_{h}", round(rate), "1/s")
    finally:
        for w in worlds.values():
            w[-1]()
    if args.skip_booking:
        return 0
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
