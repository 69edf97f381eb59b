"""withdrawal approvals: the approver's signed time (timed approvals; a cold vault's delay)

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('withdrawal_approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_at_ms', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('withdrawal_approvals', schema=None) as batch_op:
        batch_op.drop_column('approved_at_ms')
