"""Fixtures of the API's functional tests: a real store (SQLite file or a PostgreSQL schema of
its own), the app over it, and API keys whose private keys stay in the test."""

from __future__ import annotations

import pathlib
import secrets
import sys

import pytest
import sqlalchemy as sa

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # api_helpers

from api_helpers import KeyHolder, make_key  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from node.store import open_store  # noqa: E402
from tests.support.secrets_key import secrets_key_file  # noqa: E402


def _settings(url: str, schema: str | None, **overrides) -> ApiSettings:
    base = dict(
        database_url=url,
        database_schema=schema,
        secrets_key_file=secrets_key_file(),
        environment="development",
        webhook_worker=False,
        webhook_allow_insecure_urls=True,
    )
    base.update(overrides)
    return ApiSettings(**base)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"


@pytest.fixture
def pg_schema(pg_url):
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    schema = "api_" + secrets.token_hex(6)
    yield pg_url, schema
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        # A connection leaked by the test would block this forever: fail instead, after 20 s.
        conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """(url, schema) on each database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}", None
    return request.getfixturevalue("pg_schema")


class ApiHarness:
    """The app over a real store, driven through Starlette's TestClient (real HTTP semantics
    over ASGI, in process), with helpers to make keys and signed clients."""

    def __init__(self, url: str, schema: str | None, services=None, **overrides):
        from fastapi.testclient import TestClient

        self.store = open_store(url, schema=schema)
        self.settings = _settings(url, schema, **overrides)
        self.app = create_app(self.settings, store=self.store, services=services)
        self.http = TestClient(self.app, raise_server_exceptions=False)
        self.http.__enter__()

    @property
    def engine(self):
        return self.store.engine

    def key(self, scopes, client_id: str | None = None) -> KeyHolder:
        return make_key(self.engine, scopes, client_id)

    def client(self, holder: KeyHolder):
        from api.client import CustodyClient

        return CustodyClient("http://testserver", holder.key.id, holder.private_key, transport=self.http._transport)

    def close(self):
        self.http.__exit__(None, None, None)
        self.store.dispose()


@pytest.fixture
def harness_factory():
    made = []

    def make(url, schema, services=None, **overrides):
        h = ApiHarness(url, schema, services, **overrides)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def api(harness_factory, sqlite_url) -> ApiHarness:
    return harness_factory(sqlite_url, None)


@pytest.fixture
def api_both(harness_factory, db) -> ApiHarness:
    return harness_factory(*db)
