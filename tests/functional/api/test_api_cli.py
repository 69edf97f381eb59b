"""The `custody` commands built on the Python client, against a real API process."""

from __future__ import annotations

import json
import subprocess

import pytest
from api_helpers import assert_eq, fund
from api_procs import bootstrap_key, custody_cli, start_api

from api.client import CustodyClient, load_private_key
from node.store import open_store

pytestmark = pytest.mark.functional


def custody(*args, env=None):
    return subprocess.run([custody_cli(), *args], capture_output=True, text=True, timeout=120, env=env)


def test_operator_cli_bootstrap_key_then_keys_and_balances_through_the_api(tmp_path):
    url = f"sqlite:///{tmp_path / 'node.db'}"
    open_store(url).dispose()
    admin_id, admin_pem = bootstrap_key(tmp_path, url, "admin,read")
    proc, api_url = start_api(tmp_path, url, webhook_worker="false")
    try:
        import os

        env = {**os.environ, "CUSTODY_API_URL": api_url, "CUSTODY_API_KEY_ID": admin_id, "CUSTODY_API_PRIVATE_KEY": str(admin_pem)}
        # A key for the back office, created through the API; its private key stays in a file here.
        out = custody("apikey", "create", "--name", "backoffice", "--scopes", "read", "--private-key-out", str(tmp_path / "bo.pem"), env=env)
        assert out.returncode == 0, out.stderr
        bo = json.loads(out.stdout)
        assert_eq(bo["scopes"], ["read"], "scopes")
        CustodyClient(api_url, admin_id, load_private_key(admin_pem)).create_customer("acme", "Acme")
        store = open_store(url)
        fund(store, "acme.main", "USD", 4_200, "dep-1")
        store.dispose()
        env_bo = {**env, "CUSTODY_API_KEY_ID": bo["id"], "CUSTODY_API_PRIVATE_KEY": str(tmp_path / "bo.pem")}
        out = custody("balances", "acme.main", env=env_bo)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert_eq([(b["asset"], b["posted"], b["available"]) for b in got["data"]], [("USD", "4200", "4200")], "balances")
        # A read-only key cannot create keys: the CLI reports the problem and exits 1.
        out = custody("apikey", "create", "--name", "x", "--scopes", "admin", "--public-key", "A" * 43, env=env_bo)
        assert_eq(out.returncode, 1, "exit status")
        assert "missing_scope" in out.stderr
        # No connection settings: exit 2 with a sentence.
        out = custody("balances", "acme.main", env={k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_API")})
        assert_eq(out.returncode, 2, "exit status without settings")
        assert "missing --api-url" in out.stderr
    finally:
        proc.stop()
