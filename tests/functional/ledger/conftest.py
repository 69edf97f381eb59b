"""Fixtures for the ledger tests: a real database per test (SQLite file or a PostgreSQL schema
of its own, dropped afterwards), and the invariant checker run after every test.

The `db` parameter runs each test on both databases. A test that tampers with the books on
purpose says so with `@pytest.mark.ledger_tampered`: the checker must then find a violation.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from node import invariants
from node.customers import Customers
from node.ledger import AccountCreate, AccountFlags, Ledger, TransferCreate
from node.store import Store, open_store
from node.wallets import Wallets

from ledger_helpers import Clock


def pytest_configure(config):
    config.addinivalue_line("markers", "ledger_tampered: the test breaks the books on purpose; the checker must notice")


class Stores:
    """Makes stores for one test on one database kind and cleans them up."""

    def __init__(self, kind: str, tmp_path, pg_url: str | None):
        self.kind = kind
        self.tmp_path = tmp_path
        self.pg_url = pg_url
        self.made: list[Store] = []
        self.schemas: list[str] = []
        self.clock = Clock()

    def url_and_schema(self, name: str = "node") -> tuple[str, str | None]:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp_path / (name + '.db')}", None
        schema = f"t_{uuid.uuid4().hex[:16]}"
        self.schemas.append(schema)
        return self.pg_url, schema

    def make(self, name: str = "node", **kwargs) -> Store:
        url, schema = self.url_and_schema(name)
        store = open_store(url, schema=schema, wall_clock_ns=self.clock, **kwargs)
        self.made.append(store)
        return store

    def reopen(self, store: Store, **kwargs) -> Store:
        again = Store(str(store.url.render_as_string(hide_password=False)), schema=store.schema, wall_clock_ns=self.clock, **kwargs)
        self.made.append(again)
        return again

    def close(self):
        for s in self.made:
            s.dispose()
        if self.schemas:
            eng = sa.create_engine(self.pg_url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
            with eng.begin() as conn:
                for schema in self.schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return request.param, pg_url


@pytest.fixture
def stores(request, db, tmp_path):
    kind, pg_url = db
    s = Stores(kind, tmp_path, pg_url)
    yield s
    try:
        tampered = request.node.get_closest_marker("ledger_tampered") is not None
        failed = []
        for store in list(s.made):
            violations = invariants.check(store)
            if tampered:
                if not violations:
                    failed.append(f"{store.url.database}: tampered on purpose, yet the checker found nothing")
            elif violations:
                failed.append(f"{store.url.database} {store.schema or ''}: " + "; ".join(map(str, violations)))
        if failed:
            pytest.fail("invariant checker after the test:\n" + "\n".join(failed), pytrace=False)
    finally:
        s.close()


@pytest.fixture
def store(stores) -> Store:
    return stores.make()


@pytest.fixture
def ledger(store) -> Ledger:
    return Ledger(store)


class World:
    """A small set of books: BTC and ETH ledgers, a hot wallet funded by deposits into two
    customers (A holds 1,000 sat, B nothing), and a liability-free clearing account."""

    ACTOR = "test"

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        L, a = ledger, self.ACTOR
        L.create_ledger("BTC", 8, "crypto", actor=a)
        L.create_ledger("ETH", 18, "crypto", actor=a)
        self.customers = Customers(ledger)
        self.wallets = Wallets(ledger)
        self.hot = self.wallets.create_wallet("hot-btc", "vault-hot", "BTC", "hot", actor=a).account_id
        self.hot_eth = self.wallets.create_wallet("hot-eth", "vault-hot", "ETH", "hot", actor=a).account_id
        self.a = L.create_account(AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner="A"), actor=a)
        self.b = L.create_account(AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner="B"), actor=a)
        self.clearing = L.create_account(AccountCreate("BTC", "deposit_clearing", owner="system"), actor=a)
        self.eth_c = L.create_account(AccountCreate("ETH", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner="A"), actor=a)
        # Funds arrive on chain: clearing → hot wallet (asset), then hot → customer... kept simple:
        # the hot wallet is debited (holds more) and customer A credited.
        r = L.create_transfers([TransferCreate("fund-a", self.hot, self.a, 1000, "BTC", 1)], actor=a)
        assert [x.value for x in r] == ["ok"], r


@pytest.fixture
def world(ledger) -> World:
    return World(ledger)
