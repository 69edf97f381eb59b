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

_BATCH_ROWS = 1000

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
    heads = op.create_table(
        'chains_heads',
        sa.Column('chain_id', sa.String(64), primary_key=True),
        sa.Column('last_seq', sa.BigInteger, nullable=False),
        sa.Column('tip_height', sa.BigInteger),
        sa.Column('tip_hash', sa.String(80)),
    )
    conn = op.get_bind()
    last: dict[str, int] = {}
    batch: list[dict] = []
    rows = conn.execute(sa.select(_legacy).order_by(_legacy.c.chain_id, _legacy.c.block_height, _legacy.c.deposit_id)).all()
    for r in rows:
        seq = last[r.chain_id] = last.get(r.chain_id, 0) + 1
        kind = 'seen' if r.status in ('pending', 'credited') else 'left'
        assert r.status in ('pending', 'credited', 'voided', 'reorged_after_credit'), r.status
        batch.append(dict(chain_id=r.chain_id, seq=seq, kind=kind, deposit_id=r.deposit_id, asset=r.asset, txid=r.txid,
                          address=r.address, vault_id=r.vault_id, path=r.path, amount=int(r.amount),
                          height=r.block_height, block_hash=r.block_hash))
        if len(batch) >= _BATCH_ROWS:
            conn.execute(observations.insert(), batch)
            batch = []
    if batch:
        conn.execute(observations.insert(), batch)
    chain_ids = set(last) | {r.chain_id for r in conn.execute(sa.select(_blocks.c.chain_id).distinct())}
    for chain_id in sorted(chain_ids):
        tip = conn.execute(sa.select(_blocks.c.height, _blocks.c.hash).where(_blocks.c.chain_id == chain_id)
                           .order_by(_blocks.c.height.desc()).limit(1)).first()
        conn.execute(heads.insert().values(chain_id=chain_id, last_seq=last.get(chain_id, 0),
                                           tip_height=tip.height if tip else None, tip_hash=tip.hash if tip else None))
    op.drop_table('chains_deposits')


def downgrade() -> None:
    raise NotImplementedError("the per-deposit statuses live in the node now: restore a backup to go back")
