"""Idempotency-Key replays and conflicts, external_id uniqueness, on SQLite and PostgreSQL,
sequentially and under concurrency."""

from __future__ import annotations

import concurrent.futures

import pytest
import sqlalchemy as sa
from api_helpers import assert_eq, assert_problem, fund, signed

from node.store.models import customers, transfers


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def post(api, holder, path, body, key=None):
    headers, content = signed(holder, "POST", path, body, extra={"Idempotency-Key": key} if key else None)
    return api.http.post(path, content=content, headers=headers)


def test_same_key_same_body_replays_the_first_response(api_both):
    api = api_both
    admin = api.key(["admin"])
    first = post(api, admin, "/v1/customers", {"id": "acme", "name": "Acme"}, key="k-1")
    assert_eq(first.status_code, 201, "first status")
    again = post(api, admin, "/v1/customers", {"id": "acme", "name": "Acme"}, key="k-1")
    assert_eq(again.status_code, 201, "replayed status (the stored one, not 200 'exists')")
    assert_eq(again.content, first.content, "replayed body")
    assert_eq(again.headers.get("idempotent-replayed"), "true", "Idempotent-Replayed header")
    assert "idempotent-replayed" not in first.headers


def test_same_key_other_body_is_409_and_not_executed(api_both):
    api = api_both
    admin = api.key(["admin"])
    assert post(api, admin, "/v1/customers", {"id": "acme", "name": "Acme"}, key="k-1").status_code == 201
    r = post(api, admin, "/v1/customers", {"id": "beta", "name": "Beta"}, key="k-1")
    assert_problem(r, 409, "idempotency_key_reused")
    assert_eq(_count(api.engine, customers), 1, "customers")
    # Same body on another path is a different request too.
    r = post(api, admin, "/v1/customers/acme/sub-accounts", {"id": "acme", "name": "Acme"}, key="k-1")
    assert_problem(r, 409, "idempotency_key_reused")


def test_keys_are_scoped_to_the_client(api):
    a = api.key(["admin"])
    b = api.key(["admin"])  # another client
    assert post(api, a, "/v1/customers", {"id": "acme", "name": "Acme"}, key="shared").status_code == 201
    r = post(api, b, "/v1/customers", {"id": "beta", "name": "Beta"}, key="shared")
    assert_eq(r.status_code, 201, "another client's same key is its own")


def test_keys_are_shared_by_the_keys_of_one_client(api):
    a = api.key(["admin"])
    a2 = api.key(["admin"], client_id=a.key.client_id)
    first = post(api, a, "/v1/customers", {"id": "acme", "name": "Acme"}, key="k")
    again = post(api, a2, "/v1/customers", {"id": "acme", "name": "Acme"}, key="k")
    assert_eq(again.content, first.content, "replay across one client's keys")


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9"])
def test_bad_idempotency_key_is_400(api, bad):
    admin = api.key(["admin"])
    headers, content = signed(admin, "POST", "/v1/customers", {"id": "acme", "name": "Acme"})
    headers["Idempotency-Key"] = bad
    r = api.http.post("/v1/customers", content=content, headers={k: v.encode() if k == "Idempotency-Key" else v for k, v in headers.items()})
    assert_problem(r, 400, "invalid_idempotency_key")
    assert_eq(_count(api.engine, customers), 0, "customers")


def test_refusals_are_replayed_too(api):
    """A 4xx outcome is the answer for that key: the retry gets it again, without running."""
    admin = api.key(["admin", "withdraw"])
    c = api.client(admin)
    c.create_customer("acme", "Acme")
    fund(api.store, "acme.main", "USD", 10, "dep-1")
    body = {"external_id": "e1", "from_sub_account_id": "acme.main", "to_sub_account_id": "nope.main", "asset": "USD", "amount": "5"}
    first = post(api, admin, "/v1/transfers", body, key="t-1")
    assert_problem(first, 404, "sub_account_not_found")
    again = post(api, admin, "/v1/transfers", body, key="t-1")
    assert_eq((again.status_code, again.content), (first.status_code, first.content), "replayed refusal")


def test_concurrent_requests_with_one_key_execute_once(api_both):
    api = api_both
    admin = api.key(["admin", "withdraw", "read"])
    c = api.client(admin)
    c.create_customer("acme", "Acme")
    c.create_customer("beta", "Beta")
    fund(api.store, "acme.main", "USD", 10_000, "dep-1")
    transfers_before = _count(api.engine, transfers)
    body = {"external_id": "pay-1", "from_sub_account_id": "acme.main", "to_sub_account_id": "beta.main", "asset": "USD", "amount": "700"}

    def send(_):
        r = post(api, admin, "/v1/transfers", body, key="same-key")
        return r.status_code, (r.json().get("code") if r.status_code >= 400 else r.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(send, range(12)))
    ok = [o for o in outcomes if o[0] == 201]
    assert ok, f"no request succeeded: {outcomes}"
    assert_eq(len({o[1] for o in ok}), 1, "one transfer id among successes")
    others = {o for o in outcomes if o[0] != 201}
    assert others <= {(409, "idempotency_request_in_progress")}, f"unexpected outcomes: {others}"
    assert_eq(_count(api.engine, transfers) - transfers_before, 1, "ledger transfers made")
    bal = {b["asset"]: b for b in c.balances("acme.main")["data"]}
    assert_eq(bal["USD"]["posted"], "9300", "acme balance")


def test_external_id_never_moves_money_twice(api_both):
    api = api_both
    admin = api.key(["admin", "withdraw", "read"])
    c = api.client(admin)
    c.create_customer("acme", "Acme")
    c.create_customer("beta", "Beta")
    fund(api.store, "acme.main", "USD", 1_000, "dep-1")
    t1 = c.create_transfer("pay-1", "acme.main", "beta.main", "USD", 250)
    # Retry without an Idempotency-Key (a client timeout): the same transfer, 200, no new money.
    r = post(api, admin, "/v1/transfers", {"external_id": "pay-1", "from_sub_account_id": "acme.main", "to_sub_account_id": "beta.main", "asset": "USD", "amount": "250"})
    assert_eq(r.status_code, 200, "retry status")
    assert_eq(r.json(), t1, "retry body")
    # Same external_id, different amount: refused, never a second transfer.
    r = post(api, admin, "/v1/transfers", {"external_id": "pay-1", "from_sub_account_id": "acme.main", "to_sub_account_id": "beta.main", "asset": "USD", "amount": "251"})
    assert_problem(r, 409, "exists_with_different_amount")
    assert_eq(c.transfer_by_external_id("pay-1"), t1, "lookup by external_id")
    assert_eq(c.get(f"/v1/transfers/{t1['id']}"), t1, "lookup by id")
    assert_eq(c.transfer_by_external_id("never-sent"), None, "unknown external_id")
    bal = {b["asset"]: b["posted"] for b in c.balances("acme.main")["data"]}
    assert_eq(bal, {"USD": "750"}, "acme balance")
    # Another client may use the same external_id for its own transfer.
    other = api.key(["withdraw", "read"])
    t2 = api.client(other).create_transfer("pay-1", "acme.main", "beta.main", "USD", 1)
    assert t2["id"] != t1["id"]
    assert_eq(api.client(other).transfer_by_external_id("pay-1")["amount"], "1", "other client's pay-1")


def test_insufficient_funds_is_a_problem_and_moves_nothing(api):
    admin = api.key(["admin", "withdraw", "read"])
    c = api.client(admin)
    c.create_customer("acme", "Acme")
    c.create_customer("beta", "Beta")
    fund(api.store, "acme.main", "USD", 100, "dep-1")
    r = post(api, admin, "/v1/transfers", {"external_id": "big", "from_sub_account_id": "acme.main", "to_sub_account_id": "beta.main", "asset": "USD", "amount": "101"})
    doc = assert_problem(r, 422, "insufficient_funds")
    assert_eq(doc["field"], "amount", "field")
    assert_eq(c.transfer_by_external_id("big"), None, "no transfer recorded")
    assert_eq({b["asset"]: b["posted"] for b in c.balances("acme.main")["data"]}, {"USD": "100"}, "balance")
