"""client_withdrawals: the API client and external_id of each withdrawal created through the API

Revision ID: 0006
Revises: 0007
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'client_withdrawals',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('withdrawal_id', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('external_id', sa.String(length=128), nullable=False),
        sa.Column('sub_account_id', sa.String(length=64), nullable=False),
        sa.Column('created_at_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('withdrawal_id'),
        sa.UniqueConstraint('client_id', 'external_id', name='uq_client_withdrawals_external_id'),
    )
    op.create_index('ix_client_withdrawals_client', 'client_withdrawals', ['client_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_client_withdrawals_client', table_name='client_withdrawals')
    op.drop_table('client_withdrawals')
