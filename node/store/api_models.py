"""Tables of the custody API's own state: API keys, nonces, idempotency records, webhooks.

SQLAlchemy Core on the store's MetaData (node/store/models.py imports this module), created by
the Alembic migration 0002_api. These are not ledger state, so they are written directly (not
through `Store.write`, which journals): nonces and idempotency records are on every request's
hot path, webhook deliveries change at every attempt. Writes use `write_tx` (BEGIN IMMEDIATE on
SQLite, like every writer of this database).

Conventions: times are int milliseconds since the epoch (`*_ms`), ids are opaque prefixed
strings, every list has an integer `seq` giving a stable order for cursor pagination.
No amounts live in these tables.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref

import sqlalchemy as sa

from node.store.models import metadata
from node.store.types import Amount

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scopes", sa.String(128), nullable=False),  # space-separated, sorted
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),  # raw Ed25519 public key
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
)

# Nonces seen per key; the primary key makes "insert or refuse" atomic across API replicas.
api_nonces = sa.Table(
    "api_nonces",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False, index=True),
)

# One row per (key's client, Idempotency-Key): the request's fingerprint and its first response.
idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # sha256(method, path, body)
    sa.Column("state", sa.String(16), nullable=False),  # in_progress | done
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_content_type", sa.String(64), nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("locked_until_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False, index=True),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("event_types", sa.Text, nullable=False),  # space-separated patterns: "deposit.*"
    # The HMAC key has to be used in clear to sign; it is never returned after creation/rotation.
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("secret_rotated_at_ms", sa.BigInteger, nullable=False),
)

# The outbox: an event is written in the same transaction as the state change it reports.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the exact JSON body POSTed
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

# One delivery per (event, endpoint), fanned out when the event is written.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("event_id", sa.String(64), sa.ForeignKey("webhook_events.id"), nullable=False),
    sa.Column("endpoint_id", sa.String(64), sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivering | succeeded | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=False),
    sa.Column("locked_until_ms", sa.BigInteger, nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(512), nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_endpoint"),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at_ms"),
    sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "seq"),
)


@contextlib.contextmanager
def write_tx(engine: sa.Engine):
    """A write transaction on the store's engine: on SQLite it begins IMMEDIATE (the store's
    `custody_write` option), so a read-then-write never fails on a stale snapshot."""
    with engine.connect() as conn:
        conn = conn.execution_options(custody_write=True)
        with conn.begin():
            yield conn


# Internal transfers made through the API: the client's external_id (unique forever per client)
# and the sub-accounts involved; the money itself is the ledger transfer with the same id.
client_transfers = sa.Table(
    "client_transfers",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),  # = the ledger transfer id
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("from_sub_account_id", sa.String(64), nullable=False),
    sa.Column("to_sub_account_id", sa.String(64), nullable=False),
    sa.Column("asset", sa.String(64), nullable=False),
    sa.Column("amount", Amount, nullable=False),
    sa.Column("fee", Amount, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("client_id", "external_id", name="uq_client_transfers_client_external"),
)


def make_replay_engine(store) -> sa.Engine:
    """The engine for replay-protection writes (nonces), which come with every request.

    Trade-off, stated: these commits are not flushed to disk one by one. On SQLite this is a
    second engine on the same file with `synchronous=NORMAL` (WAL: a commit survives a process
    crash; a power loss may drop the last moments' nonces); on PostgreSQL it is the store's
    engine with `SET LOCAL synchronous_commit = off` in those transactions (same guarantee).
    What could be lost is a nonce seen in the last instant before a power loss, replayable only
    until its timestamp leaves the ±30 s window. Ledger writes keep full durability."""
    if store.dialect != "sqlite":
        return store.engine
    engine = sa.create_engine(
        store.url,
        pool_pre_ping=False,
        pool_size=4,
        max_overflow=4,
        pool_timeout=30,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    # SQLite's busy handler sleeps in steps of milliseconds when two writers collide: this
    # process's own nonce writers queue on a lock instead (each holds it for well under 1 ms).
    _WRITE_LOCKS[engine] = threading.Lock()
    return engine


_WRITE_LOCKS: "weakref.WeakKeyDictionary[sa.Engine, threading.Lock]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def replay_tx(engine: sa.Engine):
    """A write transaction on the replay engine (see make_replay_engine)."""
    lock = _WRITE_LOCKS.get(engine)
    with lock if lock is not None else contextlib.nullcontext(), engine.connect() as conn:
        conn = conn.execution_options(custody_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn


@contextlib.contextmanager
def replay_cursor(engine: sa.Engine):
    """The same transaction as `replay_tx`, as a DBAPI cursor (the driver's parameter style),
    for the nonce batch that every request waits on: SQLAlchemy's connection, transaction and
    result objects cost twice the database work there. Commits on success, rolls back on error."""
    lock = _WRITE_LOCKS.get(engine)
    with lock if lock is not None else contextlib.nullcontext():
        fairy = engine.raw_connection()
        try:
            cur = fairy.cursor()
            if engine.dialect.name == "sqlite":
                cur.execute("BEGIN IMMEDIATE")  # the connection is in autocommit mode (see connect)
            else:
                cur.execute("SET LOCAL synchronous_commit = off")  # psycopg has begun a transaction
            try:
                yield cur
            except BaseException:
                fairy.rollback()
                raise
            fairy.commit()
        except engine.dialect.dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(None, None, exc, engine.dialect.dbapi.Error) from exc
        finally:
            fairy.close()


# Which API client created a withdrawal, under which of its external_ids (unique forever per
# client). Written in the same transaction as the withdrawal (node/client_withdrawals.py); the
# withdrawal's own external_id is derived from (client, external_id), so that a client's ids
# never meet another client's on a shared sub-account.
client_withdrawals = sa.Table(
    "client_withdrawals",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("withdrawal_id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("sub_account_id", sa.String(64), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("client_id", "external_id", name="uq_client_withdrawals_external_id"),
    sa.Index("ix_client_withdrawals_client", "client_id", "seq"),
)
