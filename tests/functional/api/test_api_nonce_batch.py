"""The nonce group commit (api/nonces.py, apikeys.remember_nonces) keeps the replay rule of
one-transaction-per-request exactly: within a batch, across batches, across an expired
sighting, under concurrency, and its queue is bounded — on SQLite and PostgreSQL. And a
signed GET (its admission riding on the endpoint's worker hop) still answers a replay with
401 before anything else, even when its parameters are invalid."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from api_helpers import assert_eq, assert_problem, signed

from api.errors import Problem
from api.nonces import NonceWriter
from node import apikeys, limits
from node.store.api_models import _WRITE_LOCKS, make_replay_engine
from tests.support.procs import wait_until

T0 = 1_000_000_000_000
TTL = limits.API_NONCE_TTL_MS

# (case, batch of (key, nonce, at_ms), expected per sighting) — run in this order on one store.
BATCHES = [
    ("all new", [("k1", "a" * 16, T0), ("k1", "b" * 16, T0), ("k2", "a" * 16, T0)], [True, True, True]),
    ("a twin inside one batch: the first wins", [("k1", "c" * 16, T0), ("k1", "c" * 16, T0)], [True, False]),
    ("replays of earlier batches", [("k1", "a" * 16, T0 + 1), ("k2", "d" * 16, T0 + 1), ("k2", "a" * 16, T0 + 1)],
     [False, True, False]),
    ("still inside the window", [("k1", "b" * 16, T0 + TTL - 1)], [False]),
    ("expired sighting taken over once, its twin refused", [("k1", "b" * 16, T0 + TTL + 1), ("k1", "b" * 16, T0 + TTL + 1)],
     [True, False]),
    ("taken over: a replay again", [("k1", "b" * 16, T0 + TTL + 2)], [False]),
    ("empty batch", [], []),
]


@pytest.fixture
def replay(api_both):
    engine = make_replay_engine(api_both.store)
    yield engine
    if engine is not api_both.store.engine:
        engine.dispose()


def test_batches_follow_the_replay_rule(replay):
    for case, batch, expected in BATCHES:
        assert_eq(apikeys.remember_nonces(replay, batch), expected, case)
    # The single-request function agrees with what the batches recorded.
    assert not apikeys.remember_nonce(replay, "k2", "d" * 16, T0 + 2)
    assert apikeys.remember_nonce(replay, "k2", "e" * 16, T0 + 2)


def test_concurrent_twins_exactly_one_accepted_in_grouped_commits(replay):
    writer = NonceWriter(replay)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: writer.remember_blocking("k1", ("n%d" % (i % 8)).ljust(16, "x"), T0), range(64)))
    assert_eq(got.count(True), 8, f"accepted among {got}")
    assert 1 <= writer.batches <= 64, writer.batches


def test_full_queue_is_refused_with_503_and_waits_are_bounded(api):
    engine = make_replay_engine(api.store)
    writer = NonceWriter(engine, batch_max=1, queue_max=2, wait_ms=2_000)
    lock = _WRITE_LOCKS[engine]  # the leader's transaction waits on this: the queue backs up
    results: dict[str, object] = {}

    def remember(name, nonce):
        try:
            results[name] = writer.remember_blocking("k1", nonce, T0)
        except Problem as p:
            results[name] = (p.status, p.code)

    try:
        with lock:
            leader = threading.Thread(target=remember, args=("leader", "q" * 16))
            leader.start()
            wait_until(lambda: writer._leading and not writer._pending, 10, "a leader took the first sighting")
            followers = [threading.Thread(target=remember, args=(f"f{i}", f"f{i}".ljust(16, "y"))) for i in range(2)]
            for t in followers:
                t.start()
            wait_until(lambda: len(writer._pending) == 2, 10, "two followers queued")
            with pytest.raises(Problem) as refused:
                writer.remember_blocking("k1", "z" * 16, T0)
            assert_eq((refused.value.status, refused.value.code), (503, "server_busy"), "full queue")
            for t in followers:  # the leader is stuck: followers give up at their deadline
                t.join(timeout=10)
            assert_eq([results["f0"], results["f1"]], [(503, "nonce_store_unavailable")] * 2, "followers past the deadline")
        leader.join(timeout=10)
        assert_eq(results["leader"], True, "the leader's own sighting")
        # The followers' sightings were committed after they gave up: burnt, never accepted twice.
        assert_eq(writer.remember_blocking("k1", "f0".ljust(16, "y"), T0), False, "a timed-out sighting is spent")
        assert_eq(writer.remember_blocking("k1", "z" * 16, T0), True, "the refused sighting was not recorded")
    finally:
        engine.dispose()


def test_signed_get_replay_is_401_even_with_invalid_parameters(api):
    admin = api.key(["read", "admin"])
    for path in ("/v1/customers?limit=5", "/v1/customers?limit=0"):  # valid, then refused (422)
        headers, _ = signed(admin, "GET", path)
        first = api.http.get(path, headers=headers)
        assert first.status_code in (200, 422), first.text
        assert "RateLimit-Limit" in first.headers, f"rate headers on {path}"
        assert_problem(api.http.get(path, headers=headers), 401, "nonce_reused")


def test_a_get_with_a_stateful_dependency_is_admitted_before_the_dependency_runs(api):
    """Only inert dependencies (ctx_of) may run before a GET's admission; a route with any
    other dependency is admitted first, so a replay never reaches it."""
    from fastapi import APIRouter, Depends

    from api.app import include_flat
    from api.routing import SignedRoute, scope

    calls = []

    def stateful(request=None):
        calls.append(1)
        return len(calls)

    router = APIRouter(prefix="/v1/test", route_class=SignedRoute)

    @router.get("/stateful", openapi_extra=scope("read"))
    def stateful_route(n: int = Depends(stateful)) -> dict:
        return {"n": n}

    include_flat(api.app, router)
    admin = api.key(["read"])
    headers, _ = signed(admin, "GET", "/v1/test/stateful")
    assert_eq(api.http.get("/v1/test/stateful", headers=headers).json(), {"n": 1}, "first request")
    assert_problem(api.http.get("/v1/test/stateful", headers=headers), 401, "nonce_reused")
    assert_eq(len(calls), 1, "the dependency's runs (the replay never reached it)")
