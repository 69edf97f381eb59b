"""initial schema: ledger, customers, wallets, journal

Revision ID: 0001
Revises: 
Create Date: 2026-11-23

The genesis chain_head row, and triggers that make the journal append-only on both databases.
"""
from alembic import op
import sqlalchemy as sa
import node.store.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('timestamp_ns', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_chain_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_head'))
    )
    op.create_table('conversions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('sub_account_id', sa.String(length=64), nullable=False),
    sa.Column('source_asset', sa.String(length=64), nullable=False),
    sa.Column('target_asset', sa.String(length=64), nullable=False),
    sa.Column('source_amount', node.store.types.Amount(), nullable=False),
    sa.Column('rate', sa.String(length=64), nullable=False),
    sa.Column('target_exact', sa.String(length=200), nullable=False),
    sa.Column('target_amount', node.store.types.Amount(), nullable=False),
    sa.Column('rounding', sa.String(length=200), nullable=False),
    sa.Column('timestamp_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversions'))
    )
    op.create_table('customers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers'))
    )
    op.create_table('fee_schedule',
    sa.Column('operation', sa.String(length=32), nullable=False),
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('fixed', node.store.types.Amount(), nullable=False),
    sa.Column('rate_ppm', sa.Integer(), nullable=False),
    sa.Column('minimum', node.store.types.Amount(), nullable=False),
    sa.Column('maximum', node.store.types.Amount(), nullable=True),
    sa.CheckConstraint('rate_ppm >= 0 AND rate_ppm <= 1000000', name=op.f('ck_fee_schedule_rate_range')),
    sa.PrimaryKeyConstraint('operation', 'asset', name=op.f('pk_fee_schedule'))
    )
    op.create_table('fiat_movements',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('sub_account_id', sa.String(length=64), nullable=False),
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('amount', node.store.types.Amount(), nullable=False),
    sa.Column('bank_reference', sa.String(length=128), nullable=False),
    sa.Column('timestamp_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fiat_movements'))
    )
    op.create_table('journal',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at_ns', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_journal'))
    )
    op.create_table('ledgers',
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('scale', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.CheckConstraint('scale >= 0 AND scale <= 36', name=op.f('ck_ledgers_scale_range')),
    sa.PrimaryKeyConstraint('asset', name=op.f('pk_ledgers'))
    )
    op.create_table('pending_transfers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at_ns', sa.BigInteger(), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_at_ns', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_transfers'))
    )
    with op.batch_alter_table('pending_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_transfers_status_expires_at_ns'), ['status', 'expires_at_ns'], unique=False)

    op.create_table('transfers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('debit_account_id', sa.BigInteger(), nullable=False),
    sa.Column('credit_account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', node.store.types.Amount(), nullable=False),
    sa.Column('pending_id', sa.String(length=64), nullable=True),
    sa.Column('ledger', sa.String(length=64), nullable=False),
    sa.Column('code', sa.Integer(), nullable=False),
    sa.Column('flags', sa.Integer(), nullable=False),
    sa.Column('timeout_s', sa.Integer(), nullable=False),
    sa.Column('user_data', sa.String(length=128), nullable=True),
    sa.Column('timestamp_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfers')),
    sa.UniqueConstraint('pending_id', name=op.f('uq_transfers_pending_id')),
    sa.UniqueConstraint('timestamp_ns', name=op.f('uq_transfers_timestamp_ns'))
    )
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfers_credit_account_id_timestamp_ns'), ['credit_account_id', 'timestamp_ns'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfers_debit_account_id_timestamp_ns'), ['debit_account_id', 'timestamp_ns'], unique=False)

    op.create_table('accounts',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ledger', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('flags', sa.Integer(), nullable=False),
    sa.Column('code', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('user_data', sa.String(length=128), nullable=True),
    sa.Column('debits_pending', node.store.types.Amount(), nullable=False),
    sa.Column('debits_posted', node.store.types.Amount(), nullable=False),
    sa.Column('credits_pending', node.store.types.Amount(), nullable=False),
    sa.Column('credits_posted', node.store.types.Amount(), nullable=False),
    sa.Column('timestamp_ns', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['ledger'], ['ledgers.asset'], name=op.f('fk_accounts_ledger_ledgers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_ledger_kind'), ['ledger', 'kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_owner_ledger_kind'), ['owner', 'ledger', 'kind'], unique=True)

    op.create_table('sub_accounts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_sub_accounts_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sub_accounts'))
    )
    with op.batch_alter_table('sub_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sub_accounts_customer_id_name'), ['customer_id', 'name'], unique=True)

    op.create_table('wallets',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('vault_id', sa.String(length=64), nullable=False),
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=128), nullable=True),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_wallets_account_id_accounts')),
    sa.ForeignKeyConstraint(['asset'], ['ledgers.asset'], name=op.f('fk_wallets_asset_ledgers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wallets'))
    )
    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wallets_address'), ['address'], unique=True)
        batch_op.create_index(batch_op.f('ix_wallets_vault_id_asset_kind'), ['vault_id', 'asset', 'kind'], unique=False)


    op.execute(
        sa.text("INSERT INTO chain_head (id, seq, hash, timestamp_ns) VALUES (1, 0, :h, 0)").bindparams(h="0" * 64)
    )
    # The journal is append-only: the database refuses UPDATE and DELETE (the hash chain
    # catches anyone who removes these triggers first).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'journal is append-only'; END $$
            """
        )
        op.execute(
            "CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal "
            "FOR EACH ROW EXECUTE FUNCTION journal_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER journal_no_{verb.lower()} BEFORE {verb} ON journal "
                "BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS journal_append_only ON journal")
        op.execute("DROP FUNCTION IF EXISTS journal_append_only()")
    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wallets_vault_id_asset_kind'))
        batch_op.drop_index(batch_op.f('ix_wallets_address'))

    op.drop_table('wallets')
    with op.batch_alter_table('sub_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sub_accounts_customer_id_name'))

    op.drop_table('sub_accounts')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_owner_ledger_kind'))
        batch_op.drop_index(batch_op.f('ix_accounts_ledger_kind'))

    op.drop_table('accounts')
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transfers_debit_account_id_timestamp_ns'))
        batch_op.drop_index(batch_op.f('ix_transfers_credit_account_id_timestamp_ns'))

    op.drop_table('transfers')
    with op.batch_alter_table('pending_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_transfers_status_expires_at_ns'))

    op.drop_table('pending_transfers')
    op.drop_table('ledgers')
    op.drop_table('journal')
    op.drop_table('fiat_movements')
    op.drop_table('fee_schedule')
    op.drop_table('customers')
    op.drop_table('conversions')
    op.drop_table('chain_head')
