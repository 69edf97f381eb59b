"""The store: one engine per database, migrations, and THE one write path (`Store.write`).

Writers are serialised: on SQLite by `BEGIN IMMEDIATE`, on PostgreSQL by locking the single
`chain_head` row (`SELECT … FOR UPDATE`) first thing in every write transaction. Under that lock
a write reads the rows it changes, computes new balances with Python ints, writes them and
appends one journal entry, then commits once. Throughput comes from batching many events
into one transaction (docs/performance.md, "Ledger"), correctness from the lock: no lost update and no
overdraft whatever the number of processes writing.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, select

from node import audit, limits, log
from node.store.models import chain_head

_log = log.get("node.store")

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"


class WriteTx:
    """What a write function gets: the connection inside the locked transaction, the ledger
    clock, and the journal body it fills in. One per `Store.write` call."""

    __slots__ = ("conn", "dialect", "_last_ns", "_wall_ns", "started_ns")

    def __init__(self, conn, dialect: str, last_ns: int, wall_ns: int):
        self.conn = conn
        self.dialect = dialect
        self._last_ns = last_ns
        self._wall_ns = wall_ns
        self.started_ns = max(wall_ns, last_ns + 1)

    def now_ns(self) -> int:
        """The wall clock at the start of this write, never behind an earlier write."""
        return self.started_ns

    def next_timestamp_ns(self) -> int:
        """A strictly increasing timestamp for each created object (TigerBeetle's `timestamp`)."""
        self._last_ns = max(self._last_ns + 1, self._wall_ns)
        return self._last_ns

    @property
    def last_timestamp_ns(self) -> int:
        return max(self._last_ns, self.started_ns)


class Store:
    """A database holding the node's state. `url`: sqlite:///path or postgresql+psycopg://…

    `schema` (PostgreSQL only) puts every table in that schema: tests give each test its own.
    `wall_clock_ns` is injectable so that tests of pending timeouts need no sleeping.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        pool_size: int = limits.STORE_POOL_SIZE,
    ):
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql+psycopg://")
        if schema is not None and self.dialect != "postgresql":
            raise ValueError("schema applies to PostgreSQL only")
        self.schema = schema
        self.wall_clock_ns = wall_clock_ns
        self.before_commit_hook: Callable[[WriteTx], None] | None = None  # tests: crash mid-write
        self.engine = self._make_engine(pool_size)

    # --- engine ------------------------------------------------------------------------
    def _make_engine(self, pool_size: int) -> sa.Engine:
        if self.dialect == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                raise ValueError("SQLite needs a file (sqlite:///path/to/node.db): the books must be durable")
            pathlib.Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                self.url,
                pool_pre_ping=False,
                pool_size=pool_size,
                max_overflow=limits.STORE_POOL_OVERFLOW_MAX,
                pool_timeout=limits.STORE_POOL_TIMEOUT_S,
                connect_args={"timeout": limits.STORE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")  # durable: fsync at every commit
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA busy_timeout={int(limits.STORE_BUSY_TIMEOUT_MS)}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn):
                # Writers take the database write lock up front, so two writers never both read
                # a balance and then both write it.
                write = conn.get_execution_options().get("custody_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine

        options = (
            f"-c lock_timeout={limits.STORE_LOCK_TIMEOUT_MS} -c statement_timeout={limits.STORE_STATEMENT_TIMEOUT_MS}"
            " -c synchronous_commit=on"
        )
        if self.schema:
            assert self.schema.isidentifier(), "schema names are plain identifiers"
            options += f" -c search_path={self.schema}"
        return sa.create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=limits.STORE_POOL_OVERFLOW_MAX,
            pool_timeout=limits.STORE_POOL_TIMEOUT_S,
            connect_args={"connect_timeout": limits.STORE_CONNECT_TIMEOUT_S, "options": options},
        )

    def dispose(self) -> None:
        self.engine.dispose()

    # --- migrations ----------------------------------------------------------------------
    def migrate(self) -> None:
        """Brings the schema to the newest Alembic revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect() as conn:
            if self.schema:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                conn.commit()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        _log.info("store_migrated", dialect=self.dialect, schema=self.schema or "")

    # --- reads -----------------------------------------------------------------------------
    @contextmanager
    def reading(self, snapshot: bool = False):
        """A read transaction. `snapshot=True`: every statement sees the same instant
        (REPEATABLE READ on PostgreSQL; SQLite transactions always read one snapshot)."""
        with self.engine.connect() as conn:
            if snapshot and self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    # --- THE write path --------------------------------------------------------------------
    def write(self, actor: str, action: str, fn: Callable[[WriteTx], tuple[Any, dict | None]]) -> Any:
        """Runs `fn(tx)` in one serialised transaction and journals it.

        `fn` returns `(result, body)`; when `body` is not None it is appended to the journal as
        `action` by `actor` (its before/after), in the same transaction. An exception in `fn`
        rolls everything back: nothing half-applied.
        """
        if not actor or len(actor) > 128:
            raise ValueError("actor must be 1..128 characters: every change names who made it")
        with self.engine.connect() as conn:
            conn = conn.execution_options(custody_write=True)
            with conn.begin():
                q = select(chain_head.c.seq, chain_head.c.hash, chain_head.c.timestamp_ns).where(chain_head.c.id == 1)
                if self.dialect == "postgresql":
                    q = q.with_for_update()
                head = conn.execute(q).one()
                tx = WriteTx(conn, self.dialect, head.timestamp_ns, self.wall_clock_ns())
                result, body = fn(tx)
                if body is not None:
                    new_head = audit.append(conn, {"seq": head.seq, "hash": head.hash}, tx.now_ns(), actor, action, body)
                    conn.execute(
                        chain_head.update()
                        .where(chain_head.c.id == 1)
                        .values(seq=new_head["seq"], hash=new_head["hash"], timestamp_ns=tx.last_timestamp_ns)
                    )
                if self.before_commit_hook is not None:
                    self.before_commit_hook(tx)
            return result


def open_store(url: str, *, schema: str | None = None, migrate: bool = True, **kwargs) -> Store:
    store = Store(url, schema=schema, **kwargs)
    if migrate:
        store.migrate()
    return store
