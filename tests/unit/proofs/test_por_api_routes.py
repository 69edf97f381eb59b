"""The reserves routes in process (the app over a real SQLite store, Starlette's TestClient,
signed requests): paging, refusals and scopes. The end-to-end story over a real API process is
tests/functional/proofs/test_por_node_snapshot.py."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.signing import sign_request
from node import apikeys
from node.customers import Customers
from node.ledger import Ledger
from node.store import open_store
from tests.support import por_world as W
from tests.support.secrets_key import secrets_key_file


class Key:
    def __init__(self, engine, scopes, client_id=None):
        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key = apikeys.create_api_key(engine, client_id=client_id, name="t", scopes=scopes, public_key=raw)

    def headers(self, path):
        ts, nonce = str(time.time_ns() // 1_000_000), secrets.token_urlsafe(18)
        return {"X-Api-Key": self.key.id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": sign_request(self.private, "GET", path, ts, nonce, b"")}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings

    d = tmp_path_factory.mktemp("por-api")
    url = f"sqlite:///{d / 'node.db'}"
    store = open_store(url)
    world = W.make_world(d)
    wallets = W.TestKeyWallets(W.HOLDINGS)
    for day in (24, 25):  # three snapshots in the history
        W.snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, world.store, world.key,
                                 dt.datetime(2026, 11, day, tzinfo=dt.timezone.utc))
    mp = pytest.MonkeyPatch()
    mp.setenv("CUSTODY_RESERVES_STORE_DIR", str(d / "store"))
    settings = ApiSettings(database_url=url, environment="development", webhook_worker=False,
                           secrets_key_file=secrets_key_file(d))
    application = create_app(settings, store=store)
    client = TestClient(application, raise_server_exceptions=False)
    client.__enter__()
    Customers(Ledger(store)).create_customer("acct-alice", "Alice", actor="api:cli_a")
    try:
        yield client, store, world
    finally:
        client.__exit__(None, None, None)
        mp.undo()
        store.dispose()


def get(client, key, path):
    return client.get(path, headers=key.headers(path))


def test_history_pages_newest_first(app):
    client, store, world = app
    key = Key(store.engine, ["read"], "cli_a")
    r = get(client, key, "/v1/reserves/snapshots?limit=2")
    assert r.status_code == 200, r.text
    page1 = r.json()
    assert [s["seq"] for s in page1["data"]] == [3, 2] and page1["next_cursor"]
    r = get(client, key, f"/v1/reserves/snapshots?limit=2&cursor={page1['next_cursor']}")
    page2 = r.json()
    assert [s["seq"] for s in page2["data"]] == [1] and page2["next_cursor"] is None
    assert page2["data"][0]["snapshot_id"] == world.published.snapshot_id
    latest = get(client, key, "/v1/reserves/snapshots/latest/header").json()
    assert latest["header"]["snapshot_id"] == page1["data"][0]["snapshot_id"]


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/v1/reserves/snapshots?cursor=bm9wZQ", 400, "invalid_cursor"),
        ("/v1/reserves/snapshots?limit=0", 422, None),
        ("/v1/reserves/snapshots/ZZ/header", 422, None),
        ("/v1/reserves/snapshots/" + "00" * 16 + "/assets", 404, "snapshot_not_found"),
        ("/v1/reserves/snapshots/SID/proofs/acct-bob", 404, "proof_not_found"),  # no client created acct-bob
        ("/v1/reserves/snapshots/SID/proofs/bad%20id", 422, None),
        ("/v1/reserves/snapshots/SID/proofs/acct-alice?format=por-mst/2", 422, None),
    ],
)
def test_refusals(app, path, status, code):
    client, store, world = app
    key = Key(store.engine, ["read"], "cli_a")
    r = get(client, key, path.replace("SID", world.published.snapshot_id))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code:
        assert r.json()["code"] == code


def test_own_proof_needs_the_read_scope(app):
    client, store, world = app
    path = f"/v1/reserves/snapshots/{world.published.snapshot_id}/proofs/acct-alice"
    assert get(client, Key(store.engine, ["withdraw"], "cli_a"), path).status_code == 403
    r = get(client, Key(store.engine, ["read"], "cli_a"), path)
    assert r.status_code == 200 and r.json()["account_id"] == "acct-alice"
    assert json.loads(r.text)["leaves"]


def test_own_proof_in_either_encoding(app):
    from proofs import mst

    client, store, world = app
    key = Key(store.engine, ["read"], "cli_a")
    path = f"/v1/reserves/snapshots/{world.published.snapshot_id}/proofs/acct-alice"
    standard = get(client, key, path)
    assert standard.json()["format"] == mst.FORMAT
    assert get(client, key, path + "?format=por-mst/1").json() == standard.json()
    compact = get(client, key, path + "?format=por-mst/1-compact")
    assert compact.status_code == 200, compact.text
    assert compact.json() == mst.to_compact(standard.json())
    assert len(compact.content) < 0.85 * len(standard.content)
    assert mst.verify_user_proof(compact.json()).root_hash == world.published.signed_header["header"]["root"]["hash"]


def test_not_configured(app, monkeypatch):
    client, store, _ = app
    monkeypatch.delenv("CUSTODY_RESERVES_STORE_DIR")
    saved = client.app.state.reserves_reader
    client.app.state.reserves_reader = None
    try:
        r = get(client, Key(store.engine, ["read"], "cli_a"), "/v1/reserves/snapshots")
        assert r.status_code == 404 and r.json()["code"] == "reserves_not_configured"
    finally:
        client.app.state.reserves_reader = saved


def test_page_is_one_self_contained_file(app):
    client, _, _ = app
    r = client.get("/reserves/verify.html")
    assert r.status_code == 200
    assert 'src="verify.js"' not in r.text and "const POR = " in r.text
    csp = r.headers["content-security-policy"]
    assert f'content="{csp}"' in r.text and "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
