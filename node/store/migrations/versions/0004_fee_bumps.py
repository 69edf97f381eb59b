"""withdrawals: every txid of a withdrawal (fee bumps) and when its current one was broadcast

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('txids', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('broadcast_at_ns', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_column('broadcast_at_ns')
        batch_op.drop_column('txids')
