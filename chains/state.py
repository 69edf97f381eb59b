"""The chain adapters' own persistent state: scanned block hashes, watched addresses, what the
scanner observed (the deposit log: payments seen and rollbacks, no statuses),
the Bitcoin UTXO set, Ethereum nonces and the transactions we built.

Kept behind this small interface, on its own `chains_*` tables, so that the adapters do not
couple to the node's store while it is being built; the tables can move into node/store (one
Alembic migration) without changing the adapters. Amounts are Python ints stored as TEXT on
SQLite (which silently turns large integers into floats) and NUMERIC(78,0) on PostgreSQL.

Every change a scan makes for one block happens in one transaction (`ChainState.begin()`), so a
crash leaves either the whole block applied or none of it.
"""

from __future__ import annotations

import contextlib
import pathlib
import threading
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event

from node.ports import OBSERVED_ROLLBACK, OBSERVED_SEEN, Path
from node.store.types import Amount  # the ledger's money column: one definition

metadata = sa.MetaData()
_IN_CHUNK = 500  # bound parameters per IN (...) list
VERSION_TABLE = "chains_alembic_version"  # Alembic's record of this database's chains_* revision
MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"
_migrated: set[int] = set()  # engines brought to head by this process
_migrate_lock = threading.Lock()


def migrate(engine: sa.Engine) -> None:
    """Brings the chains_* tables to the newest Alembic revision (idempotent; once per engine
    per process). A database made before Alembic (metadata.create_all) is adopted by c0001."""
    with _migrate_lock:
        if id(engine) in _migrated:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        _migrated.add(id(engine))


def path_text(path: Path) -> str:
    return "/".join(str(i) for i in path)


def path_from_text(text: str) -> Path:
    return tuple(int(p) for p in text.split("/")) if text else ()


blocks = sa.Table(
    "chains_blocks",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("height", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(80), nullable=False),
)

addresses = sa.Table(
    "chains_addresses",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(100), primary_key=True),
    sa.Column("vault_id", sa.String(100), nullable=False),
    sa.Column("path", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # "deposit" | "internal"
)

counters = sa.Table(
    "chains_counters",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# What the scanner saw, append-only, in the order it saw it (`seq` per chain, no gaps): "seen"
# (an output or token transfer to a watched deposit address, in block `height` / `block_hash`)
# and "rollback" (every block above `height` left the chain). A third kind, "left" (this
# deposit's inclusion is gone), is written only by the upgrade from the old per-deposit
# statuses (migration c0002). No status here: node/deposits/ decides.
observations = sa.Table(
    "chains_observations",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("deposit_id", sa.String(200)),  # <txid>:<vout> | <tx hash>:<log index> | <tx hash>:value
    sa.Column("asset", sa.String(100)),
    sa.Column("txid", sa.String(80)),
    sa.Column("address", sa.String(100)),
    sa.Column("vault_id", sa.String(100)),
    sa.Column("path", sa.String(200)),
    sa.Column("amount", Amount),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("block_hash", sa.String(80)),
    sa.Index("ix_chains_observations_chain_id_kind_seq", "chain_id", "kind", "seq"),
)

# One row per chain: the last observation's seq and the scanned tip, changed in the same
# transaction as the blocks and observations (a reader of this row gets a consistent point).
# Every scanner write locks it first, so one chain's observations commit in seq order.
heads = sa.Table(
    "chains_heads",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("tip_height", sa.BigInteger),
    sa.Column("tip_hash", sa.String(80)),
)

utxos = sa.Table(
    "chains_utxos",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("txid", sa.String(64), primary_key=True),
    sa.Column("vout", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("address", sa.String(100), nullable=False),
    sa.Column("vault_id", sa.String(100), nullable=False),
    sa.Column("path", sa.String(200), nullable=False),
    sa.Column("amount", Amount, nullable=False),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("coinbase", sa.Boolean, nullable=False),
    sa.Column("spent_by", sa.String(64)),
    sa.Column("spent_height", sa.BigInteger),
    sa.Column("reserved_by", sa.String(200)),  # the intent whose transaction spends it
)

nonces = sa.Table(
    "chains_nonces",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("owner_id", sa.String(200)),  # NULL: released, to be reused by the next owner
)

txs = sa.Table(
    "chains_txs",
    metadata,
    sa.Column("chain_id", sa.String(64), primary_key=True),
    sa.Column("txid", sa.String(80), primary_key=True),
    sa.Column("owner_id", sa.String(200), nullable=False, index=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the unsigned transaction
    sa.Column("raw", sa.LargeBinary),  # the signed transaction, once attached
    sa.Column("meta", sa.Text, nullable=False),  # RFC 8785 JSON: inputs, change paths, fee
    sa.Column("seq", sa.Integer, nullable=False),  # 1 for the first, +1 per replacement
)


@dataclass(frozen=True)
class Utxo:
    txid: str
    vout: int
    address: str
    vault_id: str
    path: Path
    amount: int
    height: int
    coinbase: bool


@dataclass(frozen=True)
class DepositRow:
    """A payment to a deposit address found in a block (what a "seen" observation records)."""

    deposit_id: str
    asset: str
    txid: str
    address: str
    vault_id: str
    path: Path
    amount: int
    block_height: int
    block_hash: str


@dataclass(frozen=True)
class TxRow:
    txid: str
    owner_id: str
    payload: bytes
    raw: bytes | None
    meta: str
    seq: int


def make_engine(url: str) -> sa.Engine:
    """An engine with explicit options; SQLite write transactions start with BEGIN IMMEDIATE
    (SQLAlchemy's with_for_update renders nothing there)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=True)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=30)


class ChainState:
    """The state of one chain and network (`chain_id`, e.g. "bitcoin:regtest", "ethereum:1337")."""

    def __init__(self, engine: sa.Engine, chain_id: str):
        self.engine = engine
        self.chain_id = chain_id
        migrate(engine)

    @contextlib.contextmanager
    def begin(self):
        with self.engine.begin() as conn:
            yield StateTx(conn, self.chain_id)

    def read(self) -> "StateTx":
        """A short read-only view (its own transaction per call)."""
        return _AutoTx(self)


class StateTx:
    """All reads and writes inside one database transaction."""

    def __init__(self, conn: sa.Connection, chain_id: str):
        self.c = conn
        self.chain_id = chain_id

    # --- blocks ---------------------------------------------------------------------------
    def tip(self) -> tuple[int, str] | None:
        row = self.c.execute(
            sa.select(blocks.c.height, blocks.c.hash)
            .where(blocks.c.chain_id == self.chain_id)
            .order_by(blocks.c.height.desc())
            .limit(1)
        ).first()
        return (row.height, row.hash) if row else None

    def block_hash(self, height: int) -> str | None:
        return self.c.execute(
            sa.select(blocks.c.hash).where(blocks.c.chain_id == self.chain_id, blocks.c.height == height)
        ).scalar()

    def put_block(self, height: int, hash_: str, keep: int) -> None:
        self.c.execute(blocks.insert().values(chain_id=self.chain_id, height=height, hash=hash_))
        self.c.execute(blocks.delete().where(blocks.c.chain_id == self.chain_id, blocks.c.height <= height - keep))

    def delete_blocks_above(self, height: int) -> None:
        self.c.execute(blocks.delete().where(blocks.c.chain_id == self.chain_id, blocks.c.height > height))

    # --- addresses and counters -----------------------------------------------------------
    def add_address(self, address: str, vault_id: str, path: Path, role: str) -> None:
        row = self.c.execute(
            sa.select(addresses).where(addresses.c.chain_id == self.chain_id, addresses.c.address == address)
        ).first()
        if row is None:
            self.c.execute(
                addresses.insert().values(
                    chain_id=self.chain_id, address=address, vault_id=vault_id, path=path_text(path), role=role
                )
            )
        else:
            assert (row.vault_id, row.path) == (vault_id, path_text(path)), f"address {address} registered twice"

    def addresses(self, role: str | None = None) -> dict[str, tuple[str, Path, str]]:
        q = sa.select(addresses).where(addresses.c.chain_id == self.chain_id)
        if role:
            q = q.where(addresses.c.role == role)
        return {r.address: (r.vault_id, path_from_text(r.path), r.role) for r in self.c.execute(q)}

    def address_count(self) -> int:
        return self.c.execute(
            sa.select(sa.func.count()).select_from(addresses).where(addresses.c.chain_id == self.chain_id)
        ).scalar_one()

    def next_counter(self, name: str) -> int:
        """Returns the counter's value and increments it (0 the first time)."""
        cur = self.c.execute(
            sa.select(counters.c.value).where(counters.c.chain_id == self.chain_id, counters.c.name == name)
        ).scalar()
        if cur is None:
            self.c.execute(counters.insert().values(chain_id=self.chain_id, name=name, value=1))
            return 0
        self.c.execute(
            counters.update()
            .where(counters.c.chain_id == self.chain_id, counters.c.name == name)
            .values(value=cur + 1)
        )
        return cur

    # --- observations (the deposit log) ---------------------------------------------------
    def lock_head(self) -> tuple[int, int | None, str | None]:
        """Locks this chain's head row (creating it the first time): (last_seq, tip, tip hash)."""
        q = sa.select(heads.c.last_seq, heads.c.tip_height, heads.c.tip_hash).where(heads.c.chain_id == self.chain_id)
        if self.c.dialect.name == "postgresql":
            q = q.with_for_update()
        row = self.c.execute(q).first()
        if row is None:
            self.c.execute(heads.insert().values(chain_id=self.chain_id, last_seq=0, tip_height=None, tip_hash=None))
            return 0, None, None
        return row.last_seq, row.tip_height, row.tip_hash

    def observe(self, seen: list[DepositRow], rollback_to: int | None = None) -> list[int]:
        """Appends a rollback (when given) then the payments seen, and moves the head to the
        stored tip; returns their seqs. Call after the blocks table changed, in the same
        transaction."""
        last, _, _ = self.lock_head()
        rows = []
        if rollback_to is not None:
            last += 1
            rows.append(dict(chain_id=self.chain_id, seq=last, kind=OBSERVED_ROLLBACK, height=rollback_to))
        for d in seen:
            last += 1
            rows.append(dict(chain_id=self.chain_id, seq=last, kind=OBSERVED_SEEN, deposit_id=d.deposit_id, asset=d.asset,
                             txid=d.txid, address=d.address, vault_id=d.vault_id, path=path_text(d.path), amount=d.amount,
                             height=d.block_height, block_hash=d.block_hash))
        if rows:
            self.c.execute(observations.insert(), rows)
        tip = self.tip()
        self.c.execute(heads.update().where(heads.c.chain_id == self.chain_id).values(
            last_seq=last, tip_height=tip[0] if tip else None, tip_hash=tip[1] if tip else None))
        return [r["seq"] for r in rows]

    def head(self) -> tuple[int, int | None, str | None]:
        """(last_seq, tip_height, tip_hash) as of the last committed scanner write."""
        row = self.c.execute(
            sa.select(heads.c.last_seq, heads.c.tip_height, heads.c.tip_hash).where(heads.c.chain_id == self.chain_id)
        ).first()
        return (row.last_seq, row.tip_height, row.tip_hash) if row else (0, None, None)

    def rollback_between(self, after_seq: int, upto_seq: int) -> bool:
        """Whether a rollback was logged with after_seq < seq <= upto_seq (index (chain, kind, seq))."""
        return self.c.execute(
            sa.select(observations.c.seq).where(
                observations.c.chain_id == self.chain_id, observations.c.kind == OBSERVED_ROLLBACK,
                observations.c.seq > after_seq, observations.c.seq <= upto_seq).limit(1)
        ).first() is not None

    def observations_after(self, after_seq: int, upto_seq: int, limit: int) -> list:
        """Observations with after_seq < seq <= upto_seq, oldest first, at most `limit` (one
        range read on the primary key: its cost does not grow with the log)."""
        q = (
            sa.select(observations)
            .where(observations.c.chain_id == self.chain_id, observations.c.seq > after_seq, observations.c.seq <= upto_seq)
            .order_by(observations.c.seq)
            .limit(limit)
        )
        return list(self.c.execute(q))

    # --- bitcoin UTXO set -------------------------------------------------------------------
    def add_utxo(self, u: Utxo) -> None:
        self.add_utxos([u])

    def add_utxos(self, rows: list[Utxo]) -> None:
        if not rows:
            return
        self.c.execute(
            utxos.insert(),
            [
                dict(
                    chain_id=self.chain_id,
                    txid=u.txid,
                    vout=u.vout,
                    address=u.address,
                    vault_id=u.vault_id,
                    path=path_text(u.path),
                    amount=u.amount,
                    height=u.height,
                    coinbase=u.coinbase,
                )
                for u in rows
            ],
        )

    def ours_among(self, outpoints: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these outpoints are (unspent) outputs of ours: one query per chunk, so a
        block's thousands of inputs cost a few statements, not one each."""
        wanted = set(outpoints)
        txids = sorted({t for t, _ in wanted})
        found = set()
        for i in range(0, len(txids), _IN_CHUNK):
            q = sa.select(utxos.c.txid, utxos.c.vout).where(
                utxos.c.chain_id == self.chain_id, utxos.c.txid.in_(txids[i : i + _IN_CHUNK])
            )
            found.update((r.txid, r.vout) for r in self.c.execute(q) if (r.txid, r.vout) in wanted)
        return found

    def spend_utxo(self, txid: str, vout: int, spent_by: str, height: int) -> bool:
        res = self.c.execute(
            utxos.update()
            .where(utxos.c.chain_id == self.chain_id, utxos.c.txid == txid, utxos.c.vout == vout)
            .values(spent_by=spent_by, spent_height=height)
        )
        return res.rowcount > 0

    def rollback_utxos_above(self, height: int) -> None:
        """Undo what blocks above `height` did: their outputs vanish, their spends are undone."""
        self.c.execute(utxos.delete().where(utxos.c.chain_id == self.chain_id, utxos.c.height > height))
        self.c.execute(
            utxos.update()
            .where(utxos.c.chain_id == self.chain_id, utxos.c.spent_height > height)
            .values(spent_by=None, spent_height=None)
        )

    def spendable_utxos(self, vault_id: str, tip_height: int, confirmations_min: int, maturity: int) -> list[Utxo]:
        q = sa.select(utxos).where(
            utxos.c.chain_id == self.chain_id,
            utxos.c.vault_id == vault_id,
            utxos.c.spent_by.is_(None),
            utxos.c.reserved_by.is_(None),
            utxos.c.height <= tip_height - confirmations_min + 1,
        )
        out = []
        for r in self.c.execute(q):
            if r.coinbase and tip_height - r.height + 1 <= maturity:
                continue
            out.append(_utxo(r))
        return out

    def unspent_utxos(self, vault_id: str | None = None) -> list[Utxo]:
        q = sa.select(utxos).where(utxos.c.chain_id == self.chain_id, utxos.c.spent_by.is_(None))
        if vault_id is not None:
            q = q.where(utxos.c.vault_id == vault_id)
        return [_utxo(r) for r in self.c.execute(q.order_by(utxos.c.height, utxos.c.txid, utxos.c.vout))]

    def utxos_at(self, height: int) -> list[Utxo]:
        """Our outputs as they stood at the end of block `height`: created at or below it and
        not spent at or below it (spends are recorded with the height of the block that mined
        them; a mempool spend is not one). For proof of reserves: it relies on spent rows being
        kept with their spent_height (nothing prunes them)."""
        q = sa.select(utxos).where(
            utxos.c.chain_id == self.chain_id,
            utxos.c.height <= height,
            sa.or_(utxos.c.spent_height.is_(None), utxos.c.spent_height > height),
        )
        return [_utxo(r) for r in self.c.execute(q.order_by(utxos.c.address, utxos.c.txid, utxos.c.vout))]

    def utxo(self, txid: str, vout: int) -> Utxo | None:
        r = self.c.execute(
            sa.select(utxos).where(utxos.c.chain_id == self.chain_id, utxos.c.txid == txid, utxos.c.vout == vout)
        ).first()
        return _utxo(r) if r else None

    def mined_height_of(self, txid: str) -> int | None:
        """The height of a transaction of ours as scanned: it spent or created one of our
        outputs. None if our scan has not seen it in a block."""
        spent = self.c.execute(
            sa.select(sa.func.max(utxos.c.spent_height)).where(utxos.c.chain_id == self.chain_id, utxos.c.spent_by == txid)
        ).scalar()
        if spent is not None:
            return spent
        return self.c.execute(
            sa.select(sa.func.max(utxos.c.height)).where(utxos.c.chain_id == self.chain_id, utxos.c.txid == txid)
        ).scalar()

    def reserve_utxos(self, outpoints: list[tuple[str, int]], owner_id: str) -> None:
        for txid, vout in outpoints:
            res = self.c.execute(
                utxos.update()
                .where(
                    utxos.c.chain_id == self.chain_id,
                    utxos.c.txid == txid,
                    utxos.c.vout == vout,
                    utxos.c.reserved_by.is_(None),
                )
                .values(reserved_by=owner_id)
            )
            assert res.rowcount == 1, f"utxo {txid}:{vout} reserved twice"

    def release_utxos(self, owner_id: str) -> None:
        self.c.execute(
            utxos.update()
            .where(utxos.c.chain_id == self.chain_id, utxos.c.reserved_by == owner_id, utxos.c.spent_by.is_(None))
            .values(reserved_by=None)
        )

    # --- ethereum nonces ------------------------------------------------------------------
    def nonce_of(self, address: str, owner_id: str) -> int | None:
        return self.c.execute(
            sa.select(nonces.c.nonce).where(
                nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.owner_id == owner_id
            )
        ).scalar()

    def released_nonce(self, address: str, minimum: int = 0) -> int | None:
        """The lowest released nonce not below `minimum` (the chain's confirmed count)."""
        return self.c.execute(
            sa.select(sa.func.min(nonces.c.nonce)).where(
                nonces.c.chain_id == self.chain_id,
                nonces.c.address == address,
                nonces.c.owner_id.is_(None),
                nonces.c.nonce >= minimum,
            )
        ).scalar()

    def highest_nonce(self, address: str) -> int | None:
        return self.c.execute(
            sa.select(sa.func.max(nonces.c.nonce)).where(nonces.c.chain_id == self.chain_id, nonces.c.address == address)
        ).scalar()

    def claim_nonce(self, address: str, nonce: int, owner_id: str) -> None:
        exists = self.c.execute(
            sa.select(nonces.c.owner_id).where(
                nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.nonce == nonce
            )
        ).first()
        if exists is None:
            self.c.execute(nonces.insert().values(chain_id=self.chain_id, address=address, nonce=nonce, owner_id=owner_id))
        else:
            assert exists.owner_id is None, f"nonce {nonce} of {address} already owned by {exists.owner_id}"
            self.c.execute(
                nonces.update()
                .where(nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.nonce == nonce)
                .values(owner_id=owner_id)
            )

    def release_nonce(self, address: str, owner_id: str) -> None:
        self.c.execute(
            nonces.update()
            .where(nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.owner_id == owner_id)
            .values(owner_id=None)
        )

    def open_nonce_count(self, address: str, confirmed_nonce: int) -> int:
        return self.c.execute(
            sa.select(sa.func.count())
            .select_from(nonces)
            .where(nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.nonce >= confirmed_nonce)
        ).scalar_one()

    # --- transactions we built ------------------------------------------------------------
    def record_tx(self, txid: str, owner_id: str, payload: bytes, meta: str) -> int:
        seq = 1 + (
            self.c.execute(
                sa.select(sa.func.max(txs.c.seq)).where(txs.c.chain_id == self.chain_id, txs.c.owner_id == owner_id)
            ).scalar()
            or 0
        )
        self.c.execute(
            txs.insert().values(chain_id=self.chain_id, txid=txid, owner_id=owner_id, payload=payload, meta=meta, seq=seq)
        )
        return seq

    def set_tx_raw(self, txid: str, raw: bytes) -> None:
        self.c.execute(txs.update().where(txs.c.chain_id == self.chain_id, txs.c.txid == txid).values(raw=raw))

    def tx(self, txid: str) -> TxRow | None:
        r = self.c.execute(sa.select(txs).where(txs.c.chain_id == self.chain_id, txs.c.txid == txid)).first()
        return TxRow(r.txid, r.owner_id, r.payload, r.raw, r.meta, r.seq) if r else None

    def signed_txs_from(self, address: str, nonce_min: int, limit: int) -> list[bytes]:
        """Signed transactions of the owners of `address`'s nonces >= `nonce_min`, highest
        nonce first (ethereum: the evidence a peer needs past its nonce window)."""
        q = (
            sa.select(txs.c.raw)
            .select_from(nonces.join(txs, sa.and_(txs.c.chain_id == nonces.c.chain_id, txs.c.owner_id == nonces.c.owner_id)))
            .where(nonces.c.chain_id == self.chain_id, nonces.c.address == address, nonces.c.nonce >= nonce_min,
                   txs.c.raw.is_not(None))
            .order_by(nonces.c.nonce.desc(), txs.c.seq.desc())
            .limit(limit)
        )
        return [r.raw for r in self.c.execute(q)]

    def txs_of(self, owner_id: str) -> list[TxRow]:
        q = sa.select(txs).where(txs.c.chain_id == self.chain_id, txs.c.owner_id == owner_id).order_by(txs.c.seq)
        return [TxRow(r.txid, r.owner_id, r.payload, r.raw, r.meta, r.seq) for r in self.c.execute(q)]


class _AutoTx:
    """Read helper: each attribute call runs in its own short transaction."""

    def __init__(self, state: ChainState):
        self._state = state

    def __getattr__(self, name):
        def call(*a, **kw):
            with self._state.begin() as st:
                return getattr(st, name)(*a, **kw)

        return call


def _utxo(r) -> Utxo:
    return Utxo(
        txid=r.txid,
        vout=r.vout,
        address=r.address,
        vault_id=r.vault_id,
        path=path_from_text(r.path),
        amount=r.amount,
        height=r.height,
        coinbase=bool(r.coinbase),
    )
