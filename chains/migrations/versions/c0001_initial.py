"""chains: the adapters' tables as main made them with metadata.create_all (before Alembic)

A database made by that code already has them: this revision then only records itself, so the
next one can carry its data over.

Revision ID: c0001
Revises:
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

from node.store.types import Amount

revision = 'c0001'
down_revision = None
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    bind = op.get_bind()
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)  # tests: a schema each
    return not sa.inspect(bind).has_table(name, schema=schema)


def upgrade() -> None:
    if _missing('chains_blocks'):
        op.create_table(
            'chains_blocks',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('height', sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column('hash', sa.String(80), nullable=False),
        )
    if _missing('chains_addresses'):
        op.create_table(
            'chains_addresses',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('address', sa.String(100), primary_key=True),
            sa.Column('vault_id', sa.String(100), nullable=False),
            sa.Column('path', sa.String(200), nullable=False),
            sa.Column('role', sa.String(16), nullable=False),
        )
    if _missing('chains_counters'):
        op.create_table(
            'chains_counters',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('name', sa.String(200), primary_key=True),
            sa.Column('value', sa.BigInteger, nullable=False),
        )
    if _missing('chains_deposits'):
        op.create_table(
            'chains_deposits',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('deposit_id', sa.String(200), primary_key=True),
            sa.Column('asset', sa.String(100), nullable=False),
            sa.Column('txid', sa.String(80), nullable=False),
            sa.Column('address', sa.String(100), nullable=False),
            sa.Column('vault_id', sa.String(100), nullable=False),
            sa.Column('path', sa.String(200), nullable=False),
            sa.Column('amount', Amount, nullable=False),
            sa.Column('block_height', sa.BigInteger, nullable=False),
            sa.Column('block_hash', sa.String(80), nullable=False),
            sa.Column('status', sa.String(32), nullable=False),
            sa.Column('epoch', sa.Integer, nullable=False),
        )
    if _missing('chains_utxos'):
        op.create_table(
            'chains_utxos',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('txid', sa.String(64), primary_key=True),
            sa.Column('vout', sa.Integer, primary_key=True, autoincrement=False),
            sa.Column('address', sa.String(100), nullable=False),
            sa.Column('vault_id', sa.String(100), nullable=False),
            sa.Column('path', sa.String(200), nullable=False),
            sa.Column('amount', Amount, nullable=False),
            sa.Column('height', sa.BigInteger, nullable=False),
            sa.Column('coinbase', sa.Boolean, nullable=False),
            sa.Column('spent_by', sa.String(64)),
            sa.Column('spent_height', sa.BigInteger),
            sa.Column('reserved_by', sa.String(200)),
        )
    if _missing('chains_nonces'):
        op.create_table(
            'chains_nonces',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('address', sa.String(64), primary_key=True),
            sa.Column('nonce', sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column('owner_id', sa.String(200)),
        )
    if _missing('chains_txs'):
        op.create_table(
            'chains_txs',
            sa.Column('chain_id', sa.String(64), primary_key=True),
            sa.Column('txid', sa.String(80), primary_key=True),
            sa.Column('owner_id', sa.String(200), nullable=False),
            sa.Column('payload', sa.LargeBinary, nullable=False),
            sa.Column('raw', sa.LargeBinary),
            sa.Column('meta', sa.Text, nullable=False),
            sa.Column('seq', sa.Integer, nullable=False),
        )
        op.create_index('ix_chains_txs_owner_id', 'chains_txs', ['owner_id'])


def downgrade() -> None:
    for name in ('chains_txs', 'chains_nonces', 'chains_utxos', 'chains_deposits', 'chains_counters', 'chains_addresses',
                 'chains_blocks'):
        op.drop_table(name)
