"""deposits: the node's cursor per chain in the scanner's observation log, and the indexes that
keep a crediting pass independent of history

The cursor starts empty (seq 0): the first pass after the upgrade reads the log the chains
migration c0002 carried over from the old per-deposit statuses once, and meets what it already
booked as already booked.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'deposit_cursors',
        sa.Column('chain', sa.String(16), primary_key=True),
        sa.Column('network', sa.String(16), primary_key=True),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('tip_height', sa.BigInteger(), nullable=True),
        sa.Column('updated_at_ns', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_deposits_chain_network_status_block_height', 'deposits',
                    ['chain', 'network', 'status', 'block_height'])
    op.create_index('ix_deposits_chain_network_block_height', 'deposits', ['chain', 'network', 'block_height'])


def downgrade() -> None:
    op.drop_index('ix_deposits_chain_network_block_height', 'deposits')
    op.drop_index('ix_deposits_chain_network_status_block_height', 'deposits')
    op.drop_table('deposit_cursors')
