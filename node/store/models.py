"""The schema, as SQLAlchemy Core tables. Alembic migrations (migrations/versions/) create it;
tests/unit/ledger/test_schema.py checks that the migrations and these tables agree.

Every write goes through `node.store.Store.write` (the one write path), which serialises writers
on the `chain_head` row and appends the hash-chained journal in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from node.store.types import Amount

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row, id = 1: the head of the journal chain and the ledger clock. Every write transaction
# locks it first (FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE serialises SQLite already).
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# The hash-chained, append-only journal: one entry per committed write (who, what, when,
# before/after). Triggers refuse UPDATE and DELETE.
journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_ns", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

ledgers = Table(
    "ledgers",
    metadata,
    Column("asset", String(64), primary_key=True),
    Column("scale", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    CheckConstraint("scale >= 0 AND scale <= 36", name="scale_range"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("ledger", String(64), ForeignKey("ledgers.asset"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("flags", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("owner", String(64), nullable=True),  # customer sub-account or wallet id
    Column("user_data", String(128), nullable=True),
    Column("debits_pending", Amount, nullable=False),
    Column("debits_posted", Amount, nullable=False),
    Column("credits_pending", Amount, nullable=False),
    Column("credits_posted", Amount, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    Index(None, "owner", "ledger", "kind", unique=True),
    Index(None, "ledger", "kind"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount", Amount, nullable=False),
    Column("pending_id", String(64), nullable=True, unique=True),  # a pending transfer resolves once
    Column("ledger", String(64), nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("timeout_s", Integer, nullable=False),
    Column("user_data", String(128), nullable=True),
    Column("timestamp_ns", BigInteger, nullable=False, unique=True),
    Index(None, "debit_account_id", "timestamp_ns"),
    Index(None, "credit_account_id", "timestamp_ns"),
)

# The state of each pending transfer: pending -> posted | voided | expired, exactly once.
pending_transfers = Table(
    "pending_transfers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("expires_at_ns", BigInteger, nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_at_ns", BigInteger, nullable=True),
    Index(None, "status", "expires_at_ns"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at_ns", BigInteger, nullable=False),
)

sub_accounts = Table(
    "sub_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), ForeignKey("customers.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at_ns", BigInteger, nullable=False),
    Index(None, "customer_id", "name", unique=True),
)

wallets = Table(
    "wallets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("vault_id", String(64), nullable=False),
    Column("asset", String(64), ForeignKey("ledgers.asset"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("address", String(128), nullable=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("created_at_ns", BigInteger, nullable=False),
    Index(None, "vault_id", "asset", "kind"),
    Index(None, "address", unique=True),
)

fee_schedule = Table(
    "fee_schedule",
    metadata,
    Column("operation", String(32), primary_key=True),
    Column("asset", String(64), primary_key=True),
    Column("fixed", Amount, nullable=False),
    Column("rate_ppm", Integer, nullable=False),  # parts per million of the amount
    Column("minimum", Amount, nullable=False),
    Column("maximum", Amount, nullable=True),
    CheckConstraint("rate_ppm >= 0 AND rate_ppm <= 1000000", name="rate_range"),
)

# Fiat movements and conversions: the business records behind some transfers.
fiat_movements = Table(
    "fiat_movements",
    metadata,
    Column("id", String(64), primary_key=True),  # also the transfer id
    Column("direction", String(16), nullable=False),  # deposit | withdrawal
    Column("sub_account_id", String(64), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("amount", Amount, nullable=False),
    Column("bank_reference", String(128), nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
)

conversions = Table(
    "conversions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sub_account_id", String(64), nullable=False),
    Column("source_asset", String(64), nullable=False),
    Column("target_asset", String(64), nullable=False),
    Column("source_amount", Amount, nullable=False),
    Column("rate", String(64), nullable=False),  # decimal string, target units per source unit
    Column("target_exact", String(200), nullable=False),  # the exact result as "num/den"
    Column("target_amount", Amount, nullable=False),  # what was booked (rounded down)
    Column("rounding", String(200), nullable=False),  # target_exact - target_amount, "num/den"
    Column("timestamp_ns", BigInteger, nullable=False),
)

# The custody API's own tables (API keys, nonces, idempotency records, webhooks) share this
# metadata; imported last because it uses `metadata` above.
from node.store import api_models  # noqa: E402,F401

# Withdrawals, risk and approvals (migration 0003_withdrawals).
from node.store import withdrawal_models  # noqa: E402,F401

# Deposit addresses and deposits (migration 0005_deposits).
from node.store import deposit_models  # noqa: E402,F401
