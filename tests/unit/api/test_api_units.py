"""Pure parts of the API: rate-limit buckets, cursors, webhook back-off, URL and event-type
checks, problem mapping. Tables, one row per case."""

from __future__ import annotations

import random

import pytest

from api import pagination
from api.errors import Problem, domain_status
from api.ratelimit import RateLimiter
from node import limits, webhooks


def test_token_bucket_admits_burst_then_refills_at_rate():
    rl = RateLimiter(per_s=2, burst=3)
    for _ in range(3):
        rl.take("k", now_s=100.0)
    with pytest.raises(Problem) as exc:
        rl.take("k", now_s=100.0)
    p = exc.value
    assert (p.status, p.code, p.headers["Retry-After"], p.headers["RateLimit-Remaining"]) == (429, "rate_limit_exceeded", "1", "0")
    h = rl.take("k", now_s=100.5)  # one token back after 0.5 s at 2/s
    assert h["RateLimit-Remaining"] == "0"
    h = rl.take("k", now_s=110.0)  # full again, never above the burst
    assert h["RateLimit-Remaining"] == "2"


def test_rate_limiter_table_is_bounded():
    rl = RateLimiter(per_s=1, burst=1, keys_max=3)
    for i in range(10):
        rl.take(f"k{i}", now_s=0.0)
    assert len(rl._buckets) == 3


CURSORS = [
    ("round trip", "customers", pagination.encode("customers", 42), 42, None),
    ("none is the start", "customers", None, 0, None),
    ("other list", "transfers", pagination.encode("customers", 42), None, "invalid_cursor"),
    ("garbage", "customers", "!!", None, "invalid_cursor"),
    ("not a number", "customers", pagination.b64url(b"v1:customers:abc"), None, "invalid_cursor"),
    ("negative", "customers", pagination.b64url(b"v1:customers:-1"), None, "invalid_cursor"),
    ("other version", "customers", pagination.b64url(b"v2:customers:1"), None, "invalid_cursor"),
]


@pytest.mark.parametrize("case,resource,cursor,position,code", CURSORS, ids=[c[0] for c in CURSORS])
def test_cursor(case, resource, cursor, position, code):
    if code is None:
        assert pagination.decode(resource, cursor) == position
    else:
        with pytest.raises(Problem) as exc:
            pagination.decode(resource, cursor)
        assert (exc.value.status, exc.value.code, exc.value.field) == (400, code, "cursor")


def test_page_sets_next_cursor_only_when_more_rows_exist():
    rows = [(i, f"item{i}") for i in range(1, 5)]
    assert pagination.page("x", rows, 3) == (["item1", "item2", "item3"], pagination.encode("x", 3))
    assert pagination.page("x", rows, 4) == (["item1", "item2", "item3", "item4"], None)
    assert pagination.page("x", [], 4) == ([], None)


def test_backoff_doubles_with_jitter_and_caps():
    rng = random.Random(7)
    base = 1000
    for attempts in range(1, 8):
        d = webhooks.backoff_ms(attempts, base, rng)
        floor = base * 2 ** (attempts - 1)
        assert floor <= d <= floor + floor // 10, (attempts, d)
    d = webhooks.backoff_ms(60, base, rng)
    assert limits.WEBHOOK_BACKOFF_MAX_MS <= d <= limits.WEBHOOK_BACKOFF_MAX_MS * 11 // 10
    assert all(type(webhooks.backoff_ms(a, base, rng)) is int for a in range(1, 20))


URLS = [
    ("https://hooks.example.com/x", False, None),
    ("http://hooks.example.com/x", False, "url_must_be_https"),
    ("http://127.0.0.1:9000/x", True, None),
    ("https://localhost/x", False, "url_not_public"),
    ("https://192.168.1.1/x", False, "url_not_public"),
    ("https://[::1]/x", False, "url_not_public"),
    ("https://u:p@hooks.example.com/", False, "invalid_url"),
    ("ftp://hooks.example.com/", True, "invalid_url"),
    ("https://hooks.example.com:99999/", False, "invalid_url"),
    ("https:///nohost", False, "invalid_url"),
]


@pytest.mark.parametrize("url,insecure,code", URLS)
def test_webhook_url_rules(url, insecure, code):
    if code is None:
        webhooks.validate_url(url, insecure)
    else:
        with pytest.raises(webhooks.WebhookError) as exc:
            webhooks.validate_url(url, insecure)
        assert exc.value.code == code


EVENT_TYPES = [
    (["*"], None),
    (["deposit.*", "withdrawal.completed"], None),
    (["reserves"], None),
    ([], "invalid_event_types"),
    (["bogus.x"], "unknown_event_type"),
    (["deposit."], "unknown_event_type"),
]


@pytest.mark.parametrize("types,code", EVENT_TYPES)
def test_event_type_rules(types, code):
    if code is None:
        webhooks.validate_event_types(types)
    else:
        with pytest.raises(webhooks.WebhookError) as exc:
            webhooks.validate_event_types(types)
        assert exc.value.code == code


MATCH = [
    (("*",), "transfer.created", True),
    (("transfer.*",), "transfer.created", True),
    (("transfer",), "transfer.created", True),
    (("transfer.created",), "transfer.created", True),
    (("deposit.*",), "transfer.created", False),
    (("transfer.failed",), "transfer.created", False),
]


@pytest.mark.parametrize("patterns,event,want", MATCH)
def test_event_matching(patterns, event, want):
    assert webhooks._matches(patterns, event) is want


STATUSES = [
    ("customer_not_found", 404),
    ("exists_with_different_amount", 409),
    ("idempotency_key_reused", 422),  # raised as a Problem(409) directly, never via the table
    ("too_many_endpoints", 409),
    ("insufficient_funds", 422),
]


@pytest.mark.parametrize("code,status", STATUSES)
def test_domain_status(code, status):
    assert domain_status(code) == status
