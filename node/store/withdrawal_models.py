"""Tables of withdrawals, risk and approvals (migration 0003_withdrawals).

Every write to these goes through `Store.write` (journaled, serialised with the ledger), so a
withdrawal's status change and its ledger transfers commit together or not at all. Amounts are
`Amount` (TEXT on SQLite, NUMERIC(78,0) on PostgreSQL); times are int nanoseconds (`*_ns`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from node.store.models import metadata
from node.store.types import Amount

# One MPC key as the node knows it (public part only): hot or cold, its committee.
vaults = Table(
    "vaults",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # hot | cold
    Column("committee", Text, nullable=False),  # JSON list of party ids
    Column("threshold", Integer, nullable=False),
    Column("public_key", String(66), nullable=False),  # hex, 33-byte compressed
    Column("chain_code", String(64), nullable=False),  # hex
    Column("created_at_ns", BigInteger, nullable=False),
)

withdrawals = Table(
    "withdrawals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sub_account_id", String(64), nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # withdrawal | sweep | rebalance | refill
    Column("vault_id", String(64), nullable=False),
    Column("source_path", String(64), nullable=False),  # "1/0": the vault path paying (ethereum sender)
    Column("chain", String(16), nullable=False),
    Column("network", String(16), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("destination", String(128), nullable=False),
    Column("amount", Amount, nullable=False),
    Column("fee_max", Amount, nullable=False),
    Column("status", String(32), nullable=False),
    Column("sub_status", String(512), nullable=False),
    Column("risk", Text, nullable=True),  # JSON: outcome, reasons, score, policy version
    Column("intent", Text, nullable=False),  # RFC 8785 JSON of the WithdrawalIntent
    Column("unsigned_tx", Text, nullable=True),  # JSON of the UnsignedTransaction (hex payload)
    Column("signed_raw", Text, nullable=True),  # hex, stored before any broadcast
    Column("txid", String(80), nullable=True),
    Column("fee_paid", Amount, nullable=True),  # chain fee asset base units
    Column("attempts", Integer, nullable=False),
    Column("not_before_ns", BigInteger, nullable=False),  # cold vault delay
    Column("broadcast_height", BigInteger, nullable=True),
    Column("txids", Text, nullable=True),  # JSON list: every signed version's txid, oldest first (fee bumps)
    Column("broadcast_at_ns", BigInteger, nullable=True),  # when the current version entered the mempool
    Column("created_at_ns", BigInteger, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
    Index(None, "sub_account_id", "external_id", unique=True),
    Index(None, "status", "updated_at_ns"),
    Index(None, "sub_account_id", "asset", "created_at_ns"),
)

withdrawal_approvals = Table(
    "withdrawal_approvals",
    metadata,
    Column("withdrawal_id", String(64), primary_key=True),
    Column("approver_id", String(64), primary_key=True),
    Column("decision", String(16), nullable=False),  # approve | reject
    Column("signature", String(128), nullable=False),  # hex Ed25519 over the intent's canonical bytes
    Column("created_at_ns", BigInteger, nullable=False),
    # A timed approval's signed time (Unix ms, the approver's clock): a cold vault's delay runs from it.
    Column("approved_at_ms", BigInteger, nullable=True),
)

# Declarative risk policy, versioned: proposed, then active once approvers signed it.
risk_policies = Table(
    "risk_policies",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # proposed | active | superseded
    Column("approvals", Text, nullable=False),  # JSON {approver_id: hex signature}
    Column("proposed_by", String(128), nullable=False),
    Column("created_at_ns", BigInteger, nullable=False),
)

# Per sub-account: KYC tier and freeze.
risk_profiles = Table(
    "risk_profiles",
    metadata,
    Column("sub_account_id", String(64), primary_key=True),
    Column("kyc_tier", String(32), nullable=False),
    Column("frozen_reason", String(512), nullable=True),
    Column("updated_at_ns", BigInteger, nullable=False),
)

address_whitelist = Table(
    "address_whitelist",
    metadata,
    Column("sub_account_id", String(64), primary_key=True),
    Column("asset", String(64), primary_key=True),
    Column("address", String(128), primary_key=True),
    Column("added_at_ns", BigInteger, nullable=False),
    Column("usable_after_ns", BigInteger, nullable=False),
)
