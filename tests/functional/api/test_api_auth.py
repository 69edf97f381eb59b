"""Every authentication failure is refused with 401/403 and a problem document, and nothing
is executed: the refused request would have created a customer; afterwards the customer does
not exist and the journal head has not moved."""

from __future__ import annotations

import concurrent.futures

import pytest
import sqlalchemy as sa
from api_helpers import assert_eq, assert_problem, signed
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import apikeys, limits
from node.store.models import chain_head, customers

PATH = "/v1/customers"
BODY = {"id": "acme", "name": "Acme Ltd"}


def _journal_seq(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(chain_head.c.seq)).scalar_one()


def _customer_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()


OTHER = Ed25519PrivateKey.generate()

# (case, request knobs, status, code) — in the order authenticate checks them.
CASES = [
    ("no headers at all", dict(drop=("X-Api-Key", "X-Timestamp", "X-Nonce", "X-Signature")), 401, "missing_authentication"),
    ("missing signature", dict(drop=("X-Signature",)), 401, "missing_authentication"),
    ("missing nonce", dict(drop=("X-Nonce",)), 401, "missing_authentication"),
    ("unknown key", dict(extra={"X-Api-Key": "key_000000000000000000000000"}), 401, "unknown_api_key"),
    ("timestamp not a number", dict(extra={"X-Timestamp": "12ab"}), 401, "malformed_timestamp"),
    ("nonce too short", dict(nonce="short"), 401, "malformed_nonce"),
    ("signature not base64url", dict(extra={"X-Signature": "a+b/c="}), 401, "malformed_signature"),
    ("stale timestamp (31 s old)", dict(timestamp_offset_ms=-31_000), 401, "timestamp_outside_window"),
    ("timestamp 31 s in the future", dict(timestamp_offset_ms=31_000), 401, "timestamp_outside_window"),
    ("signed by another key", dict(sign_with=OTHER), 401, "invalid_signature"),
    ("body changed after signing", dict(sign_body=b'{"id":"acme","name":"Other"}'), 401, "invalid_signature"),
    ("path changed after signing", dict(sign_path="/v1/customers?x=1"), 401, "invalid_signature"),
]


@pytest.mark.parametrize("case,knobs,status,code", CASES, ids=[c[0] for c in CASES])
def test_refused_and_nothing_executed(api, case, knobs, status, code):
    admin = api.key(["admin", "read"])
    seq_before = _journal_seq(api.engine)
    headers, content = signed(admin, "POST", PATH, BODY, **knobs)
    r = api.http.post(PATH, content=content, headers=headers)
    doc = assert_problem(r, status, code)
    assert doc["detail"]
    assert_eq(_customer_count(api.engine), 0, "customers after a refused request")
    assert_eq(_journal_seq(api.engine), seq_before, "journal head after a refused request")


def test_the_same_request_properly_signed_is_executed(api):
    """The control for the table above: the request itself is fine."""
    admin = api.key(["admin"])
    headers, content = signed(admin, "POST", PATH, BODY)
    r = api.http.post(PATH, content=content, headers=headers)
    assert r.status_code == 201, r.text
    assert_eq(_customer_count(api.engine), 1, "customers")


def test_reused_nonce_is_refused_and_not_executed_twice(api):
    admin = api.key(["admin"])
    headers, content = signed(admin, "POST", PATH, BODY)
    assert api.http.post(PATH, content=content, headers=headers).status_code == 201
    seq = _journal_seq(api.engine)
    # A byte-identical replay and a fresh signature with the same nonce are both refused.
    assert_problem(api.http.post(PATH, content=content, headers=headers), 401, "nonce_reused")
    h2, c2 = signed(admin, "POST", PATH, {"id": "beta", "name": "Beta"}, nonce=headers["X-Nonce"])
    assert_problem(api.http.post(PATH, content=c2, headers=h2), 401, "nonce_reused")
    assert_eq(_journal_seq(api.engine), seq, "journal head after replays")
    assert_eq(_customer_count(api.engine), 1, "customers")


def test_nonce_is_per_key(api):
    a, b = api.key(["read"]), api.key(["read"])
    ha, _ = signed(a, "GET", "/v1/whoami", nonce="n" * 20)
    hb, _ = signed(b, "GET", "/v1/whoami", nonce="n" * 20)
    assert api.http.get("/v1/whoami", headers=ha).status_code == 200
    assert api.http.get("/v1/whoami", headers=hb).status_code == 200


def test_missing_scope_is_403_and_not_executed(api):
    reader = api.key(["read", "withdraw"])
    headers, content = signed(reader, "POST", PATH, BODY)
    doc = assert_problem(api.http.post(PATH, content=content, headers=headers), 403, "missing_scope")
    assert "admin" in doc["detail"]
    assert_eq(_customer_count(api.engine), 0, "customers")


def test_missing_scope_is_decided_before_the_body_is_parsed(api):
    reader = api.key(["read"])
    headers, content = signed(reader, "POST", PATH, b"{not json")
    assert_problem(api.http.post(PATH, content=content, headers=headers), 403, "missing_scope")


def test_revoked_key_is_refused(api):
    admin = api.key(["admin", "read"])
    victim = api.key(["read"], client_id=admin.key.client_id)
    api.client(admin).revoke_api_key(victim.key.id)
    headers, _ = signed(victim, "GET", "/v1/whoami")
    assert_problem(api.http.get("/v1/whoami", headers=headers), 401, "unknown_api_key")


def test_query_string_is_signed_exactly_as_sent(api):
    reader = api.key(["read"])
    path = "/v1/customers?limit=2"
    headers, _ = signed(reader, "GET", path)
    assert api.http.get(path, headers=headers).status_code == 200
    headers, _ = signed(reader, "GET", path)
    assert_problem(api.http.get("/v1/customers?limit=3", headers=headers), 401, "invalid_signature")


def test_body_over_the_limit_is_refused(api):
    admin = api.key(["admin"])
    big = b'{"id":"x","name":"' + b"a" * limits.API_BODY_BYTES_MAX + b'"}'
    headers, content = signed(admin, "POST", PATH, big)
    assert_problem(api.http.post(PATH, content=content, headers=headers), 413, "body_too_large")


def test_concurrent_replays_of_one_signed_request_execute_once(harness_factory, db):
    """The nonce store is the database: N simultaneous copies of one signed request (as from
    N replicas) -> exactly one runs."""
    api = harness_factory(*db)
    admin = api.key(["admin"])
    headers, content = signed(admin, "POST", PATH, BODY)

    def send(_):
        return api.http.post(PATH, content=content, headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(16)))
    assert_eq(statuses.count(201), 1, f"successes among {statuses}")
    assert_eq(statuses.count(401), 15, f"refusals among {statuses}")
    assert_eq(_customer_count(api.engine), 1, "customers")


def test_expired_nonces_are_purged_and_a_reuse_after_the_window_is_accepted(api):
    admin = api.key(["read"])
    t0 = 1_000_000_000_000
    assert apikeys.remember_nonce(api.engine, admin.key.id, "n" * 16, t0)
    assert not apikeys.remember_nonce(api.engine, admin.key.id, "n" * 16, t0 + limits.API_NONCE_TTL_MS - 1)
    later = t0 + limits.API_NONCE_TTL_MS + 1
    assert apikeys.purge_nonces(api.engine, later) >= 1
    assert apikeys.remember_nonce(api.engine, admin.key.id, "n" * 16, later)
