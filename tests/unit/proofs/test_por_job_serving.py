"""The snapshot job's announcement, the ownership rule of served proofs, and the reserves
config of the node — over a real store on SQLite (node.store) and real sealing (argon2id)."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest
import sqlalchemy as sa

from node import webhooks
from node.customers import Customers
from node.ledger import Ledger
from node.store import open_store
from node.store.api_models import webhook_events
from proofs import job as pjob
from proofs import serving
from tests.support import por_world as W
from tests.support.secrets_key import secret_box

BOX = secret_box()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """The node's store on each database (PostgreSQL: a schema of its own, dropped after)."""
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'node.db'}")
        yield s
        s.dispose()
        return
    url = request.getfixturevalue("pg_url")
    schema = "por_" + secrets.token_hex(6)
    s = open_store(url, schema=schema)
    try:
        yield s
    finally:
        s.dispose()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.mark.parametrize(
    "created_by, asked, expected",
    [
        ("api:cli_a", "alice", "cli_a"),
        ("api:cli_a", "alic", None),  # a prefix of an id is another id
        ("api:cli_a", "alice2", None),
        ("staff:ops", "alice", None),  # not created through the API: no client owns it
    ],
)
def test_a_customer_belongs_to_the_client_that_created_it(store, created_by, asked, expected):
    customers = Customers(Ledger(store))
    customers.create_customer("alice", "Alice", actor=created_by)
    customers.create_customer("alice2x", "Other", actor="api:cli_b")
    assert serving.customer_client_id(store.engine, asked) == expected


def test_proofs_are_served_only_to_the_owning_client(store, tmp_path):
    world = W.make_world(tmp_path)  # accounts acct-alice, acct-bob, ...
    customers = Customers(Ledger(store))
    customers.create_customer("acct-alice", "Alice", actor="api:cli_a")
    customers.create_customer("acct-bob", "Bob", actor="api:cli_b")
    reader = serving.ReservesReader(tmp_path / "store", store.engine)
    sid = world.published.snapshot_id
    assert reader.proof(sid, "acct-alice", "cli_a")["account_id"] == "acct-alice"
    for customer, client in (("acct-bob", "cli_a"), ("acct-alice", "cli_b"), ("acct-nobody", "cli_a")):
        with pytest.raises(serving.NotFound) as e:
            reader.proof(sid, customer, client)
        assert e.value.reason == "proof_not_found"
    with pytest.raises(serving.NotFound) as e:
        reader.proof("00" * 16, "acct-alice", "cli_a")
    assert e.value.reason == "snapshot_not_found"
    reader.close()


def _events(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(webhook_events.c.client_id, webhook_events.c.payload)
                            .where(webhook_events.c.type == "reserves.snapshot").order_by(webhook_events.c.seq)).all()


def test_announce_once_per_client_and_snapshot(store, tmp_path):
    webhooks.register_endpoint(store.engine, "cli_a", "http://127.0.0.1:9/a", ["reserves.*"], allow_insecure=True, box=BOX)
    webhooks.register_endpoint(store.engine, "cli_b", "http://127.0.0.1:9/b", ["*"], allow_insecure=True, box=BOX)
    world = W.make_world(tmp_path)
    assert pjob.announce(store.engine, world.published) == 2
    assert pjob.announce(store.engine, world.published) == 0  # a re-run (or a restart) sends nothing twice
    webhooks.register_endpoint(store.engine, "cli_c", "http://127.0.0.1:9/c", ["deposit.*"], allow_insecure=True, box=BOX)
    assert pjob.announce(store.engine, world.published) == 0  # cli_c did not subscribe to reserves events
    webhooks.register_endpoint(store.engine, "cli_d", "http://127.0.0.1:9/d", ["reserves.snapshot"], allow_insecure=True, box=BOX)
    assert pjob.announce(store.engine, world.published) == 1  # a client subscribing later gets the latest one
    got = _events(store)
    assert sorted(c for c, _ in got) == ["cli_a", "cli_b", "cli_d"]
    data = json.loads(got[0][1])["data"]
    assert data["snapshot_id"] == world.published.snapshot_id and data["public_key"] == world.public_key_hex
    assert "acct-alice" not in got[0][1]  # nothing per customer in a broadcast event


def test_the_job_takes_when_due_and_announces(store, tmp_path):
    webhooks.register_endpoint(store.engine, "cli_a", "http://127.0.0.1:9/a", ["reserves.snapshot"], allow_insecure=True, box=BOX)
    wallets = W.TestKeyWallets(W.HOLDINGS)
    key = W.Ed25519PrivateKey.generate()
    snap_store = W.snapshot.SnapshotStore(tmp_path / "store")
    j = pjob.SnapshotJob(W.TableLiabilities(W.BALANCES), wallets, wallets, snap_store, key, interval_s=3600, engine=store.engine)
    t0 = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)
    first = j.tick(t0)
    assert first is not None and first.seq == 1
    assert j.tick(t0 + dt.timedelta(minutes=59)) is None
    second = j.tick(t0 + dt.timedelta(hours=1))
    assert second.seq == 2 and second.signed_header["header"]["prev"] is not None
    assert [json.loads(p)["data"]["snapshot_id"] for _, p in _events(store)] == [first.snapshot_id, second.snapshot_id]
    with pytest.raises(ValueError):
        pjob.SnapshotJob(W.TableLiabilities(W.BALANCES), wallets, wallets, snap_store, key, interval_s=1)


def _cfg(tmp_path, **over):
    r = {"store_dir": str(tmp_path / "reserves"), "node_id": "node-1", "snapshot_key_file": str(tmp_path / "k.sealed"),
         "passphrase_file": str(tmp_path / "pass"), "interval_s": 3600,
         "assets": [{"code": "BTC", "chain": "bitcoin", "decimals": 8}]}
    r.update(over)
    return {"reserves": {k: v for k, v in r.items() if v is not None}}


@pytest.mark.parametrize(
    "over, message",
    [
        ({"passphrase_file": None}, "missing passphrase_file"),
        ({"snapshot_key_file": None}, "missing snapshot_key_file"),
        ({"interval_s": 5}, "interval_s must be"),
        ({"assets": []}, "assets must list"),
    ],
)
def test_reserves_config_has_no_defaults(tmp_path, over, message):
    from api import reserves_root

    with pytest.raises(reserves_root.ReservesConfigError, match=message):
        reserves_root.reserves_section(_cfg(tmp_path, **over))


def test_snapshot_key_sealed_opened_never_replaced(tmp_path):
    from api import reserves_root
    from proofs.snapshot_key import public_hex

    r = _cfg(tmp_path)["reserves"]
    (tmp_path / "pass").write_text("short")
    with pytest.raises(reserves_root.ReservesConfigError, match="passphrase_too_short"):
        reserves_root.init_key(r)
    (tmp_path / "pass").write_text("a passphrase long enough\n")
    public = reserves_root.init_key(r)
    assert public_hex(reserves_root.open_key(r)) == public
    with pytest.raises(reserves_root.ReservesConfigError, match="never replaced"):
        reserves_root.init_key(r)
    (tmp_path / "pass").write_text("another passphrase, wrong\n")
    with pytest.raises(reserves_root.ReservesConfigError, match="does not open"):
        reserves_root.open_key(r)
    (tmp_path / "pass").write_text("a passphrase long enough\n")
    with pytest.raises(reserves_root.ReservesConfigError, match="does not open"):
        reserves_root.open_key({**r, "node_id": "node-2"})  # sealed for another node


class BatchingWallets(W.TestKeyWallets):
    """A signer with `sign_reserves_many`, as the cluster has; `bad_first` gets a signature by
    another key in the batch (a faulty reply), then a good one when asked alone."""

    def __init__(self, holdings, bad_first=None):
        super().__init__(holdings)
        self.batches, self.singles, self.bad_first = [], [], bad_first

    def sign_reserves_many(self, chain, vault_id, paths, snapshot_id, root_hash):
        self.batches.append((chain, vault_id, [tuple(p) for p in paths]))
        sigs = [self.sign_reserves(chain, vault_id, p, snapshot_id, root_hash) for p in paths]
        self.singles.clear()
        if self.bad_first is not None and self.bad_first in [tuple(p) for p in paths]:
            i = [tuple(p) for p in paths].index(self.bad_first)
            sigs[i] = sigs[(i + 1) % len(sigs)] if len(sigs) > 1 else sigs[i]
        return sigs

    def sign_reserves(self, chain, vault_id, path, snapshot_id, root_hash):
        self.singles.append(tuple(path))
        return super().sign_reserves(chain, vault_id, path, snapshot_id, root_hash)


def test_reserves_are_signed_in_one_batch_per_chain_and_vault(tmp_path):
    wallets = BatchingWallets(W.HOLDINGS)
    store = W.snapshot.SnapshotStore(tmp_path / "store")
    published = W.snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, store,
                                         W.Ed25519PrivateKey.generate())
    # (0, 3) holds ETH and USDT: one key, signed once, its signature in both entries.
    assert sorted((c, v, sorted(p)) for c, v, p in wallets.batches) == [
        ("bitcoin", "vault-hot", [(0, 1), (0, 2)]), ("ethereum", "vault-hot", [(0, 3)])]
    entries = published.assets_doc["addresses"]
    assert len(entries) == 4 and len({e["signature"] for e in entries if e["chain"] == "ethereum"}) == 1


def test_a_bad_batch_signature_is_asked_for_again_alone(tmp_path):
    wallets = BatchingWallets(W.HOLDINGS, bad_first=(0, 2))
    store = W.snapshot.SnapshotStore(tmp_path / "store")
    published = W.snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, store,
                                         W.Ed25519PrivateKey.generate())
    assert wallets.singles == [(0, 2)]  # after the batches, only the bad one again
    from proofs import assets as ast

    ast.verify_assets_file(published.assets_doc, published.signed_header["header"])


def test_one_taker_at_a_time(tmp_path):
    import fcntl

    wallets = W.TestKeyWallets(W.HOLDINGS)
    snap_store = W.snapshot.SnapshotStore(tmp_path / "store")
    j = pjob.SnapshotJob(W.TableLiabilities(W.BALANCES), wallets, wallets, snap_store, W.Ed25519PrivateKey.generate(),
                         interval_s=3600)
    with open(tmp_path / "store" / "taking.lock", "a+b") as other:  # another process taking one
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(W.snapshot.tree.SnapshotRefused) as e:
            j.tick()
        assert e.value.reason == "snapshot_in_progress"
        assert snap_store.latest() is None
    assert j.tick() is not None
