"""deposits: deposit addresses of customer sub-accounts, and their on-chain deposits

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa

from node.store.types import Amount

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'deposit_addresses',
        sa.Column('seq', Seq, primary_key=True, autoincrement=True),
        sa.Column('id', sa.String(64), nullable=False, unique=True),
        sa.Column('sub_account_id', sa.String(64), nullable=False),
        sa.Column('client_id', sa.String(64), nullable=True),
        sa.Column('chain', sa.String(16), nullable=False),
        sa.Column('network', sa.String(16), nullable=False),
        sa.Column('family', sa.String(16), nullable=False),
        sa.Column('vault_id', sa.String(64), nullable=False),
        sa.Column('path_index', sa.BigInteger(), nullable=False),
        sa.Column('address', sa.String(128), nullable=False),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_deposit_addresses_chain_address', 'deposit_addresses', ['chain', 'address'], unique=True)
    op.create_index('ix_deposit_addresses_vault_id_chain_path_index', 'deposit_addresses', ['vault_id', 'chain', 'path_index'], unique=True)
    op.create_index('ix_deposit_addresses_sub_account_id_seq', 'deposit_addresses', ['sub_account_id', 'seq'])
    op.create_table(
        'deposits',
        sa.Column('seq', Seq, primary_key=True, autoincrement=True),
        sa.Column('id', sa.String(64), nullable=False, unique=True),
        sa.Column('chain', sa.String(16), nullable=False),
        sa.Column('network', sa.String(16), nullable=False),
        sa.Column('chain_deposit_id', sa.String(200), nullable=False),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('asset', sa.String(64), nullable=False),
        sa.Column('txid', sa.String(80), nullable=False),
        sa.Column('address', sa.String(128), nullable=False),
        sa.Column('address_id', sa.String(64), nullable=False),
        sa.Column('sub_account_id', sa.String(64), nullable=False),
        sa.Column('vault_id', sa.String(64), nullable=False),
        sa.Column('amount', Amount, nullable=False),
        sa.Column('block_height', sa.BigInteger(), nullable=False),
        sa.Column('block_hash', sa.String(80), nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('review', sa.String(64), nullable=True),
        sa.Column('swept_by', sa.String(64), nullable=True),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
        sa.Column('updated_at_ns', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_deposits_chain_network_chain_deposit_id_epoch', 'deposits', ['chain', 'network', 'chain_deposit_id', 'epoch'], unique=True)
    op.create_index('ix_deposits_sub_account_id_seq', 'deposits', ['sub_account_id', 'seq'])
    op.create_index('ix_deposits_status', 'deposits', ['status'])


def downgrade() -> None:
    op.drop_table('deposits')
    op.drop_table('deposit_addresses')
