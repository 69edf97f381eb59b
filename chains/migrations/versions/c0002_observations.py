"""chains: the scanner reports observations; the per-deposit statuses move to node/deposits/

chains_deposits (one row per deposit with the scanner's own status) becomes the append-only
chains_observations log plus a chains_heads row per chain. Each stored deposit is carried over
as what the node needs to reach the same decision the old scanner had reached, with nothing
lost and nothing credited twice (the node's booking is keyed by the deposit, so meeting a
deposit it already booked changes nothing):

    pending, credited          -> "seen" at its block (the node credits at depth itself)
    voided, reorged_after_credit -> "left" (its inclusion is gone: the node voids a pending
                                  record, flags a credited one, and ignores one it never booked)

The node's cursor (node migration 0008) starts at 0, so the first pass after the upgrade reads
this carried-over log once, in bounded batches.

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

from node.store.types import Amount

revision = 'c0002'
down_revision = 'c0001'
branch_labels = None
depends_on = None

_STATUSES = ('pending', 'credited', 'voided', 'reorged_after_credit')

_old = sa.MetaData()  # Table (not table()): a schema_translate_map applies to it
_legacy = sa.Table(
    'chains_deposits', _old,
    sa.Column('chain_id', sa.String), sa.Column('deposit_id', sa.String), sa.Column('asset', sa.String),
    sa.Column('txid', sa.String), sa.Column('address', sa.String), sa.Column('vault_id', sa.String),
    sa.Column('path', sa.String), sa.Column('amount', Amount), sa.Column('block_height', sa.BigInteger),
    sa.Column('block_hash', sa.String), sa.Column('status', sa.String), sa.Column('epoch', sa.Integer),
)
_blocks = sa.Table('chains_blocks', _old, sa.Column('chain_id', sa.String), sa.Column('height', sa.BigInteger),
                   sa.Column('hash', sa.String))


def upgrade() -> None:
    observations = op.create_table(
        'chains_observations',
        sa.Column('chain_id', sa.String(64), primary_key=True),
        sa.Column('seq', sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('deposit_id', sa.String(200)),
        sa.Column('asset', sa.String(100)),
        sa.Column('txid', sa.String(80)),
        sa.Column('address', sa.String(100)),
        sa.Column('vault_id', sa.String(100)),
        sa.Column('path', sa.String(200)),
        sa.Column('amount', Amount),
        sa.Column('height', sa.BigInteger, nullable=False),
        sa.Column('block_hash', sa.String(80)),
    )
    op.create_index('ix_chains_observations_chain_id_kind_seq', 'chains_observations', ['chain_id', 'kind', 'seq'])
    heads = op.create_table(
        'chains_heads',
        sa.Column('chain_id', sa.String(64), primary_key=True),
        sa.Column('last_seq', sa.BigInteger, nullable=False),
        sa.Column('tip_height', sa.BigInteger),
        sa.Column('tip_hash', sa.String(80)),
    )
    conn = op.get_bind()
    old = _legacy.c
    unknown = conn.execute(sa.select(sa.func.count()).select_from(_legacy).where(old.status.not_in(_STATUSES))).scalar_one()
    assert unknown == 0, f"{unknown} chains_deposits rows in a status this upgrade does not know"
    # One INSERT … SELECT: seq numbers each chain's deposits in height order (no rows in Python).
    seq = sa.func.row_number().over(partition_by=old.chain_id, order_by=(old.block_height, old.deposit_id))
    kind = sa.case((old.status.in_(('pending', 'credited')), 'seen'), else_='left')
    cols = ['chain_id', 'seq', 'kind', 'deposit_id', 'asset', 'txid', 'address', 'vault_id', 'path', 'amount', 'height',
            'block_hash']
    conn.execute(observations.insert().from_select(cols, sa.select(
        old.chain_id, seq, kind, old.deposit_id, old.asset, old.txid, old.address, old.vault_id, old.path, old.amount,
        old.block_height, old.block_hash)))
    last = {r.chain_id: int(r.n) for r in conn.execute(
        sa.select(old.chain_id, sa.func.count().label('n')).group_by(old.chain_id))}
    chain_ids = set(last) | {r.chain_id for r in conn.execute(sa.select(_blocks.c.chain_id).distinct())}
    for chain_id in sorted(chain_ids):
        tip = conn.execute(sa.select(_blocks.c.height, _blocks.c.hash).where(_blocks.c.chain_id == chain_id)
                           .order_by(_blocks.c.height.desc()).limit(1)).first()
        conn.execute(heads.insert().values(chain_id=chain_id, last_seq=last.get(chain_id, 0),
                                           tip_height=tip.height if tip else None, tip_hash=tip.hash if tip else None))
    op.drop_table('chains_deposits')


def downgrade() -> None:
    raise NotImplementedError("the per-deposit statuses live in the node now: restore a backup to go back")
