"""Tables of the custody API's own state: API keys, nonces, idempotency records, webhooks.

SQLAlchemy Core on one MetaData, portable between SQLite (default) and PostgreSQL. They live
here until the ledger's `node/store` lands; they then move into its metadata and get their own
Alembic migration after the ledger's (same names, same columns).

Conventions: times are int milliseconds since the epoch (`*_ms`), ids are opaque prefixed
strings, every list has an integer `seq` giving a stable order for cursor pagination.
No amounts live in these tables.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy import event

metadata = sa.MetaData()

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


def make_engine(url: str) -> sa.Engine:
    """An engine with explicit options. SQLite: WAL, a busy timeout, foreign keys, and every
    transaction started with BEGIN IMMEDIATE (SQLAlchemy's with_for_update is a no-op there)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
            pool_pre_ping=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=30,
        connect_args={"connect_timeout": 10},
    )


def create_all(engine: sa.Engine) -> None:
    metadata.create_all(engine)
