"""The nonce group commit (api/nonces.py, apikeys.remember_nonces) keeps the replay rule of
one-transaction-per-request exactly: within a batch, across batches, across an expired
sighting, under concurrency, and its queue is bounded — on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures

import pytest
from api_helpers import assert_eq

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


def test_batches_follow_the_replay_rule(api_both):
    replay = make_replay_engine(api_both.store)
    try:
        for case, batch, expected in BATCHES:
            assert_eq(apikeys.remember_nonces(replay, batch), expected, case)
        # The single-request function agrees with what the batches recorded.
        assert not apikeys.remember_nonce(replay, "k2", "d" * 16, T0 + 2)
        assert apikeys.remember_nonce(replay, "k2", "e" * 16, T0 + 2)
    finally:
        if replay is not api_both.store.engine:
            replay.dispose()


def test_concurrent_twins_through_the_writer_exactly_one_accepted(api_both):
    replay = make_replay_engine(api_both.store)
    writer = NonceWriter(replay)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda i: writer.remember_blocking("k1", ("n%d" % (i % 8)).ljust(16, "x"), T0), range(64)))
        assert_eq(got.count(True), 8, f"accepted among {got}")
        assert 1 <= writer.batches <= 64, writer.batches
    finally:
        writer.stop()
        if replay is not api_both.store.engine:
            replay.dispose()


def test_full_queue_is_refused_with_503_and_nothing_lost(api):
    replay = make_replay_engine(api.store)
    writer = NonceWriter(replay, batch_max=1, queue_max=2)
    lock = _WRITE_LOCKS[replay]  # the writer's transaction waits on this: the queue backs up
    try:
        with lock:
            first = writer.submit("k1", "q" * 16, T0)
            wait_until(lambda: writer._queue.qsize() == 0, 10, "the writer took the first sighting")
            queued = [writer.submit("k1", f"q{i}".ljust(16, "y"), T0) for i in range(2)]
            with pytest.raises(Problem) as refused:
                writer.submit("k1", "z" * 16, T0)
            assert_eq((refused.value.status, refused.value.code), (503, "server_busy"), "full queue")
        assert_eq([f.result(timeout=10) for f in [first, *queued]], [True, True, True], "queued sightings answered")
        assert apikeys.remember_nonce(replay, "k1", "z" * 16, T0), "the refused sighting was not recorded"
    finally:
        writer.stop()
        replay.dispose()
