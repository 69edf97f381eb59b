"""The upgrade from main at ede5567 (the scanner's own deposit statuses in chains_deposits, the
node diffing all of them): node.db and chains.db in tests/fixtures/upgrade_ede5567 were made by
that code (make_fixture.py there says how, and what each deposit went through). Opened by this
code, both databases migrate (node 0008, chains c0001 + c0002), and the first pass carries
every deposit over: nothing credited twice, nothing lost, the missed void booked, and the
scanner continues on the same stored blocks."""

from __future__ import annotations

import json
import pathlib
import shutil

import sqlalchemy as sa

from chains.state import ChainState, make_engine
from node import invariants
from node.deposits import Deposits
from node.ledger import Ledger
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED
from node.store import open_store
from node.store.models import transfers
from tests.support.scripted_chain import ScriptedChain

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "upgrade_ede5567"


def _balance(store, sub, asset):
    from node.clients import ClientOps

    for b in ClientOps(store).balances(sub):
        if b.asset == asset:
            return b.posted, b.pending_in
    return 0, 0


def _transfer_ids(url) -> list[str]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        ids = sorted(r.id for r in c.execute(sa.select(transfers.c.id)))
    eng.dispose()
    return ids


def _version(url, table) -> str | None:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        v = c.exec_driver_sql(f"SELECT version_num FROM {table}").scalar() if sa.inspect(c).has_table(table) else None
    eng.dispose()
    return v


def test_a_node_made_by_ede5567_upgrades_without_losing_or_recrediting_a_deposit(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    for name in ("node.db", "chains.db"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    node_url, chains_url = f"sqlite:///{tmp_path / 'node.db'}", f"sqlite:///{tmp_path / 'chains.db'}"
    assert (_version(node_url, "alembic_version"), _version(chains_url, "chains_alembic_version")) == ("0006", None)
    transfers_before = _transfer_ids(node_url)
    dids = expected["deposit_ids"]
    assert expected["node"] == {f"{dids['credited']}#1": DEPOSIT_CREDITED, f"{dids['flagged']}#1": DEPOSIT_REORGED_AFTER_CREDIT,
                                f"{dids['voided']}#1": DEPOSIT_VOIDED, f"{dids['pending']}#1": DEPOSIT_PENDING,
                                f"{dids['remined']}#1": DEPOSIT_PENDING}, "the fixture's starting point"

    store = open_store(node_url)
    engine = make_engine(chains_url)
    try:
        chain = ScriptedChain(ChainState(engine, "bitcoin:regtest"), confirmations=expected["depth"], asset="BTC",
                              chain="bitcoin", network="regtest")
        chain.blocks = [(h, []) for h in expected["blocks"]]  # the node the old scanner followed
        assert (_version(node_url, "alembic_version"), _version(chains_url, "chains_alembic_version")) == ("0008", "c0002")
        assert chain.observations(0, 100).last_seq == 7, "one entry per stored deposit"
        deps = Deposits(Ledger(store), {"bitcoin": chain}, vault_id="hot")
        assert _balance(store, "zoe.main", "BTC") == (3_000, 9_000), "credited 1000 + 2000 (flagged, kept); pending 4000 + 5000"

        first = deps.sync(chain)
        assert (first.pending, first.voided, first.credited, first.flagged) == (2, 1, 0, 0), \
            "unsynced and remined (epoch 2) booked, remined epoch 1 voided; nothing else"
        got = {(d.chain_deposit_id, d.epoch): d.status for d in deps.list("zoe.main", limit=100)}
        assert got == {(dids["credited"], 1): DEPOSIT_CREDITED, (dids["flagged"], 1): DEPOSIT_REORGED_AFTER_CREDIT,
                       (dids["voided"], 1): DEPOSIT_VOIDED, (dids["pending"], 1): DEPOSIT_PENDING,
                       (dids["remined"], 1): DEPOSIT_VOIDED, (dids["remined"], 2): DEPOSIT_PENDING,
                       (dids["unsynced"], 1): DEPOSIT_PENDING}
        assert _balance(store, "zoe.main", "BTC") == (3_000, 4_000 + 5_000 + 6_000)
        new = sorted(set(_transfer_ids(node_url)) - set(transfers_before))
        assert set(transfers_before) <= set(_transfer_ids(node_url)), "nothing booked before is touched"
        assert len(new) == 3, new  # remined epoch 1 void, remined epoch 2 pending, unsynced pending
        assert deps.sync(chain).total == 0, "a second pass books nothing"

        # The scanner carries on from the stored blocks; the node credits at depth, once.
        chain.extend(3, tag="k")  # tip 18: "pending" (h13) at 6 confirmations
        chain.scan()
        r = deps.sync(chain)
        assert (r.credited, r.pending) == (1, 0)
        chain.extend(1, tag="k")  # tip 19: h14 at 6
        chain.scan()
        assert deps.sync(chain).credited == 2
        assert _balance(store, "zoe.main", "BTC") == (3_000 + 4_000 + 5_000 + 6_000, 0)
        assert deps.sync(chain).total == 0
        assert deps.cursor("bitcoin", "regtest").tip_height == 19
        assert not invariants.check(store)
    finally:
        store.dispose()
        engine.dispose()


def test_the_chains_log_carried_over_on_postgresql_matches_sqlite(tmp_path, pg_url):
    """c0002 on PostgreSQL (a fresh schema brought to c0001, the fixture's chains_deposits rows
    copied in) gives the same log and heads as on the SQLite file."""
    import uuid

    from alembic import command
    from alembic.config import Config

    from chains import state as cs

    shutil.copy(FIXTURE / "chains.db", tmp_path / "chains.db")
    lite = make_engine(f"sqlite:///{tmp_path / 'chains.db'}")
    legacy = sa.Table("chains_deposits", sa.MetaData(), autoload_with=lite)
    with lite.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.select(legacy))]
        blocks = [dict(r._mapping) for r in c.execute(sa.select(cs.blocks))]
    cs.migrate(lite)
    schema = f"up_{uuid.uuid4().hex[:12]}"
    admin = make_engine(pg_url)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    pg = make_engine(pg_url).execution_options(schema_translate_map={None: schema})
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(cs.MIGRATIONS_DIR))
        with pg.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "c0001")
            conn.commit()
        with pg.begin() as c:
            c.execute(sa.Table("chains_deposits", sa.MetaData(), autoload_with=c).insert(), rows)
            c.execute(cs.blocks.insert(), blocks)
        cs.migrate(pg)

        def log(engine):
            with engine.connect() as c:
                obs = [tuple(r) for r in c.execute(sa.select(cs.observations).order_by(cs.observations.c.seq))]
                heads = [tuple(r) for r in c.execute(sa.select(cs.heads))]
            return obs, heads

        assert len(rows) == 7 and log(pg) == log(lite)
        with pg.connect() as c:
            assert not sa.inspect(c).has_table("chains_deposits", schema=schema)
    finally:
        pg.dispose()
        lite.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
