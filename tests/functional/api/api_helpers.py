"""Helpers shared by the API tests: keys, signed raw requests, value assertions."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from node import apikeys


@dataclasses.dataclass
class KeyHolder:
    key: apikeys.ApiKey
    private_key: Ed25519PrivateKey


def make_key(engine, scopes, client_id=None) -> KeyHolder:
    private_key = Ed25519PrivateKey.generate()
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = apikeys.create_api_key(engine, client_id=client_id, name="test", scopes=list(scopes), public_key=raw)
    return KeyHolder(key, private_key)


def signed(holder: KeyHolder, method: str, path: str, body=None, *, timestamp_ms=None, timestamp_offset_ms=0, nonce=None, sign_with=None,
           sign_path=None, sign_body=None, drop=(), extra=None):
    """(headers, content) for a request, with knobs to break exactly one thing."""
    from api.signing import sign_request

    content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    ts = str(time.time_ns() // 1_000_000 + timestamp_offset_ms if timestamp_ms is None else timestamp_ms)
    nonce = nonce or secrets.token_urlsafe(18)
    sig = sign_request(
        sign_with or holder.private_key,
        method,
        sign_path or path,
        ts,
        nonce,
        content if sign_body is None else sign_body,
    )
    headers = {"X-Api-Key": holder.key.id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": sig}
    if body is not None:
        headers["Content-Type"] = "application/json"
    headers.update(extra or {})
    for h in drop:
        headers.pop(h)
    return headers, content


def assert_eq(got, want, what=""):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def assert_problem(resp, status: int, code: str):
    assert resp.status_code == status, f"status: got {resp.status_code} {resp.text}, want {status} {code}"
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers["content-type"]
    doc = resp.json()
    assert doc["code"] == code, f"code: got {doc['code']!r} ({doc.get('detail')}), want {code!r}"
    assert doc["status"] == status
    return doc


def fund(store, sub_account_id: str, asset: str, amount: int, movement_id: str) -> None:
    """Test set-up through the domain (deposits over HTTP come with the deposit pipeline): a
    fiat ledger and a bank deposit credited to the sub-account."""
    from node.customers import Customers
    from node.ledger import Ledger, LedgerKind

    ledger = Ledger(store)
    ledger.create_ledger(asset, 2, LedgerKind.FIAT, actor="test:setup")
    r = Customers(ledger).fiat_deposit(movement_id, sub_account_id, asset, amount, "bank-ref", actor="test:setup")
    assert r.ok, r
