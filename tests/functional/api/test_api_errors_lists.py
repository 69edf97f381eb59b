"""Problem documents for bad input (never a 5xx), cursor pagination, rate limits, health,
readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import pytest
from api_helpers import assert_eq, assert_problem, signed

from node import limits


def req(api, holder, method, path, body=None, **kw):
    headers, content = signed(holder, method, path, body, **kw)
    return api.http.request(method, path, content=content or None, headers=headers)


BAD_INPUT = [
    # (case, method, path, body, status, code, field)
    ("malformed JSON", "POST", "/v1/customers", b'{"id": "acme",', 400, "malformed_json", "body"),
    ("missing field", "POST", "/v1/customers", {"id": "acme"}, 422, "validation_failed", "name"),
    ("unknown field", "POST", "/v1/customers", {"id": "acme", "name": "A", "color": "red"}, 422, "validation_failed", "color"),
    ("bad id characters", "POST", "/v1/customers", {"id": "a b", "name": "A"}, 422, "validation_failed", "id"),
    ("amount as a JSON number", "POST", "/v1/transfers",
     {"external_id": "e", "from_sub_account_id": "a.main", "to_sub_account_id": "b.main", "asset": "USD", "amount": 5},
     422, "validation_failed", "amount"),
    ("amount with a decimal point", "POST", "/v1/transfers",
     {"external_id": "e", "from_sub_account_id": "a.main", "to_sub_account_id": "b.main", "asset": "USD", "amount": "1.5"},
     422, "validation_failed", "amount"),
    ("negative amount", "POST", "/v1/transfers",
     {"external_id": "e", "from_sub_account_id": "a.main", "to_sub_account_id": "b.main", "asset": "USD", "amount": "-5"},
     422, "validation_failed", "amount"),
    ("limit 0", "GET", "/v1/customers?limit=0", None, 422, "validation_failed", "limit"),
    ("limit 501", "GET", "/v1/customers?limit=501", None, 422, "validation_failed", "limit"),
    ("limit not a number", "GET", "/v1/customers?limit=ten", None, 422, "validation_failed", "limit"),
    ("garbage cursor", "GET", "/v1/customers?cursor=%21%21", None, 400, "invalid_cursor", "cursor"),
    ("unknown customer", "GET", "/v1/customers/nobody", None, 404, "customer_not_found", None),
    ("unknown sub-account", "GET", "/v1/sub-accounts/nobody.main/balances", None, 404, "sub_account_not_found", None),
    ("unknown route", "GET", "/v1/nothing-here", None, 404, "not_found", None),
    ("wrong method", "DELETE", "/v1/customers", None, 405, "method_not_allowed", None),
    ("webhook URL not http(s)", "POST", "/v1/webhook-endpoints", {"url": "ftp://x", "event_types": ["*"]}, 422, "invalid_url", "url"),
    ("unknown event type", "POST", "/v1/webhook-endpoints", {"url": "http://127.0.0.1:1/h", "event_types": ["bogus.x"]}, 422, "unknown_event_type", "event_types"),
]


@pytest.mark.parametrize("case,method,path,body,status,code,field", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_problem_document(api, case, method, path, body, status, code, field):
    admin = api.key(["admin", "read", "withdraw"])
    doc = assert_problem(req(api, admin, method, path, body), status, code)
    assert_eq(doc.get("field"), field, "field")
    assert doc["type"].endswith("/" + code) and doc["title"] and doc["detail"]


def test_production_refuses_plain_http_and_private_webhook_urls(harness_factory, sqlite_url):
    api = harness_factory(sqlite_url, None, environment="production", webhook_allow_insecure_urls=False)
    admin = api.key(["admin"])
    for url, code in [
        ("http://hooks.example.com/x", "url_must_be_https"),
        ("https://127.0.0.1/x", "url_not_public"),
        ("https://10.1.2.3/x", "url_not_public"),
        ("https://user:pw@hooks.example.com/x", "invalid_url"),
    ]:
        r = req(api, admin, "POST", "/v1/webhook-endpoints", {"url": url, "event_types": ["*"]})
        assert_problem(r, 422, code)


def test_cursor_pagination_walks_every_item_once_in_a_stable_order(api):
    admin = api.key(["admin", "read"])
    c = api.client(admin)
    ids = [f"cust-{i:02d}" for i in range(7)]
    for i in ids:
        c.create_customer(i, i.upper())
    pages, cursor = [], None
    while True:
        page = c.get("/v1/customers", {"limit": 3, "cursor": cursor})
        pages.append([x["id"] for x in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert_eq(pages, [ids[0:3], ids[3:6], ids[6:7]], "pages")
    assert_eq([x["id"] for x in c.paginate("/v1/customers", limit=500)], ids, "one big page")
    # A cursor of one list is refused by another.
    cursor = c.get("/v1/customers", {"limit": 1})["next_cursor"]
    assert_problem(req(api, admin, "GET", f"/v1/webhook-endpoints?cursor={cursor}"), 400, "invalid_cursor")
    # Default limit is 100.
    assert_eq(len(c.get("/v1/customers")["data"]), 7, "default page")
    assert limits.API_PAGE_LIMIT_DEFAULT == 100


def test_rate_limit_is_per_key_with_headers(harness_factory, sqlite_url):
    api = harness_factory(sqlite_url, None, rate_limit_per_s=1, rate_limit_burst=3)
    a, b = api.key(["read"]), api.key(["read"])
    statuses = [req(api, a, "GET", "/v1/whoami") for _ in range(4)]
    assert_eq([r.status_code for r in statuses], [200, 200, 200, 429], "statuses")
    ok = statuses[0]
    assert_eq(ok.headers["RateLimit-Limit"], "3", "RateLimit-Limit")
    assert_eq(ok.headers["RateLimit-Remaining"], "2", "RateLimit-Remaining")
    over = assert_problem(statuses[3], 429, "rate_limit_exceeded")
    assert over["detail"]
    assert int(statuses[3].headers["Retry-After"]) >= 1
    assert_eq(statuses[3].headers["RateLimit-Remaining"], "0", "remaining when refused")
    assert_eq(req(api, b, "GET", "/v1/whoami").status_code, 200, "another key is not limited")


def test_health_ready_openapi_and_metrics(harness_factory, sqlite_url):
    token = "m" * 24
    api = harness_factory(sqlite_url, None, metrics_token=token)
    assert_eq(api.http.get("/v1/health").json(), {"status": "ok"}, "health")
    assert_eq(api.http.get("/v1/ready").json(), {"status": "ready", "database": "ok"}, "ready")
    doc = api.http.get("/openapi.json").json()
    assert "/v1/transfers" in doc["paths"] and "ProblemDocument" in doc["components"]["schemas"]
    assert_eq(doc["paths"]["/v1/transfers"]["post"]["x-scope"], "withdraw", "declared scope")
    assert_problem(api.http.get("/metrics"), 401, "invalid_metrics_token")
    r = api.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "custody_api_requests_total" in r.text


def test_metrics_are_off_without_a_token(api):
    assert_problem(api.http.get("/metrics"), 404, "not_found")
