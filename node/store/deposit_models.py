"""Tables of deposit addresses, customer deposits (migration 0005_deposits) and the cursor in
each chain's observation log (migration 0008_deposit_cursors).

Written only through `Store.write` (journaled, serialised with the ledger), so a deposit's
status change, its ledger transfers and its webhook event commit together or not at all.
Amounts are `Amount` (TEXT on SQLite, NUMERIC(78,0) on PostgreSQL); times are int ns; every
table has an integer `seq` giving a stable order for cursor pagination.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from node.store.models import metadata
from node.store.types import Amount

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# A customer sub-account's address of the hot vault: the non-hardened child (0, path_index).
# One address per (chain, address); on ethereum one address receives ETH and every token
# (`family` "ETH"), on bitcoin BTC (`family` "BTC").
deposit_addresses = Table(
    "deposit_addresses",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("sub_account_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=True),  # the API client that asked: its webhooks
    Column("chain", String(16), nullable=False),
    Column("network", String(16), nullable=False),
    Column("family", String(16), nullable=False),  # BTC | ETH
    Column("vault_id", String(64), nullable=False),
    Column("path_index", BigInteger, nullable=False),
    Column("address", String(128), nullable=False),
    Column("created_at_ns", BigInteger, nullable=False),
    Index(None, "chain", "address", unique=True),
    Index(None, "vault_id", "chain", "path_index", unique=True),
    Index(None, "sub_account_id", "seq"),
)

# One on-chain payment to a deposit address, per epoch (a deposit voided by a reorg and mined
# again is a new row with the next epoch). `id` names its ledger transfers: `<id>` (pending,
# deposit clearing -> customer), `<id>:post`, `<id>:void`, `<id>:in` (wallet <- clearing).
deposits = Table(
    "deposits",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("chain", String(16), nullable=False),
    Column("network", String(16), nullable=False),
    Column("chain_deposit_id", String(200), nullable=False),  # <txid>:<vout> | <tx hash>:<log index>|value
    Column("epoch", Integer, nullable=False),
    Column("asset", String(64), nullable=False),
    Column("txid", String(80), nullable=False),
    Column("address", String(128), nullable=False),
    Column("address_id", String(64), nullable=False),
    Column("sub_account_id", String(64), nullable=False),
    Column("vault_id", String(64), nullable=False),
    Column("amount", Amount, nullable=False),
    Column("block_height", BigInteger, nullable=False),
    Column("block_hash", String(80), nullable=False),
    Column("status", String(32), nullable=False),  # pending | credited | voided | reorged_after_credit
    Column("review", String(64), nullable=True),  # reversal_needed: a credited deposit left the chain
    Column("swept_by", String(64), nullable=True),  # the sweep withdrawal that moved it to hot
    Column("created_at_ns", BigInteger, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
    Index(None, "chain", "network", "chain_deposit_id", "epoch", unique=True),
    Index(None, "sub_account_id", "seq"),
    Index(None, "status"),
)

# The node's cursor in one chain's observation log (chains_observations): the last entry it
# booked and the scanned tip it applied confirmations at. Moved in the same Store.write as the
# bookings, so a crash leaves both or neither.
deposit_cursors = Table(
    "deposit_cursors",
    metadata,
    Column("chain", String(16), primary_key=True),
    Column("network", String(16), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("tip_height", BigInteger, nullable=True),
    Column("updated_at_ns", BigInteger, nullable=False),
)

# What a pass reads besides the log: the pending deposits due at the tip, and on a rollback the
# deposits above the fork. Both are ranges of recent heights, whatever the history.
Index("ix_deposits_chain_network_status_block_height", deposits.c.chain, deposits.c.network, deposits.c.status,
      deposits.c.block_height)
Index("ix_deposits_chain_network_block_height", deposits.c.chain, deposits.c.network, deposits.c.block_height)
