"""withdrawals: vaults, withdrawals, approvals, risk policies, profiles, whitelist

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Tables of node/store/withdrawal_models.py, written by hand to match them.
"""
from alembic import op
import sqlalchemy as sa
import node.store.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

A = node.store.types.Amount


def upgrade() -> None:
    op.create_table('vaults',
        sa.Column('id', sa.String(64), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('committee', sa.Text(), nullable=False),
        sa.Column('threshold', sa.Integer(), nullable=False),
        sa.Column('public_key', sa.String(66), nullable=False),
        sa.Column('chain_code', sa.String(64), nullable=False),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vaults')))
    op.create_table('withdrawals',
        sa.Column('id', sa.String(64), nullable=False),
        sa.Column('sub_account_id', sa.String(64), nullable=False),
        sa.Column('external_id', sa.String(128), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('vault_id', sa.String(64), nullable=False),
        sa.Column('source_path', sa.String(64), nullable=False),
        sa.Column('chain', sa.String(16), nullable=False),
        sa.Column('network', sa.String(16), nullable=False),
        sa.Column('asset', sa.String(64), nullable=False),
        sa.Column('destination', sa.String(128), nullable=False),
        sa.Column('amount', A(), nullable=False),
        sa.Column('fee_max', A(), nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('sub_status', sa.String(512), nullable=False),
        sa.Column('risk', sa.Text(), nullable=True),
        sa.Column('intent', sa.Text(), nullable=False),
        sa.Column('unsigned_tx', sa.Text(), nullable=True),
        sa.Column('signed_raw', sa.Text(), nullable=True),
        sa.Column('txid', sa.String(80), nullable=True),
        sa.Column('fee_paid', A(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('not_before_ns', sa.BigInteger(), nullable=False),
        sa.Column('broadcast_height', sa.BigInteger(), nullable=True),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
        sa.Column('updated_at_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals')))
    with op.batch_alter_table('withdrawals', schema=None) as b:
        b.create_index(b.f('ix_withdrawals_sub_account_id_external_id'), ['sub_account_id', 'external_id'], unique=True)
        b.create_index(b.f('ix_withdrawals_status_updated_at_ns'), ['status', 'updated_at_ns'], unique=False)
        b.create_index(b.f('ix_withdrawals_sub_account_id_asset_created_at_ns'), ['sub_account_id', 'asset', 'created_at_ns'], unique=False)
    op.create_table('withdrawal_approvals',
        sa.Column('withdrawal_id', sa.String(64), nullable=False),
        sa.Column('approver_id', sa.String(64), nullable=False),
        sa.Column('decision', sa.String(16), nullable=False),
        sa.Column('signature', sa.String(128), nullable=False),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('withdrawal_id', 'approver_id', name=op.f('pk_withdrawal_approvals')))
    op.create_table('risk_policies',
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('approvals', sa.Text(), nullable=False),
        sa.Column('proposed_by', sa.String(128), nullable=False),
        sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('version', name=op.f('pk_risk_policies')))
    op.create_table('risk_profiles',
        sa.Column('sub_account_id', sa.String(64), nullable=False),
        sa.Column('kyc_tier', sa.String(32), nullable=False),
        sa.Column('frozen_reason', sa.String(512), nullable=True),
        sa.Column('updated_at_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('sub_account_id', name=op.f('pk_risk_profiles')))
    op.create_table('address_whitelist',
        sa.Column('sub_account_id', sa.String(64), nullable=False),
        sa.Column('asset', sa.String(64), nullable=False),
        sa.Column('address', sa.String(128), nullable=False),
        sa.Column('added_at_ns', sa.BigInteger(), nullable=False),
        sa.Column('usable_after_ns', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('sub_account_id', 'asset', 'address', name=op.f('pk_address_whitelist')))


def downgrade() -> None:
    for t in ('address_whitelist', 'risk_profiles', 'risk_policies', 'withdrawal_approvals', 'withdrawals', 'vaults'):
        op.drop_table(t)
