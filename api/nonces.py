"""Group commit of request nonces, led by the requests' own worker threads.

Every signed request's nonce must be recorded (see make_replay_engine for the durability
trade-off) and found new for its key, across replicas, before the request runs. Written as
one transaction per request through SQLAlchemy, the nonce was the largest cost of a signed
read; handed to a writer thread, the thread wake-ups in both directions cost as much again.
Here a request's worker thread records its own nonce: it queues the sighting, and if no
commit is in progress it becomes the leader, takes everything queued (at most
API_NONCE_BATCH_MAX), records it with `apikeys.remember_nonces` in one transaction and
answers every sighting in it; meanwhile others queue and wait (followers), and one of them
leads the next batch. Uncontended, a request commits its own nonce with no thread switch.
The checks are unchanged: the database's primary key decides "new or replayed", across
replicas, and no sighting is answered before its commit.

Bounds: at most API_NONCE_QUEUE_MAX sightings wait (then 503 server_busy); a request waits at
most API_NONCE_WAIT_MS for its commit (then 503 nonce_store_unavailable; the request did not
run). A failed transaction fails its whole batch the same way. The leader also purges expired
nonces, one bounded batch every API_NONCE_PURGE_EVERY_COUNT sightings.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time

import sqlalchemy as sa

import node.log
from api.errors import Problem
from node import apikeys, limits
from node.store.api_models import now_ms

log = node.log.get("api.nonces")


def _unavailable(detail: str) -> Problem:
    return Problem(503, "nonce_store_unavailable", detail, headers={"Retry-After": "1"})


class NonceWriter:
    def __init__(self, replay_engine: sa.Engine, *, batch_max: int = limits.API_NONCE_BATCH_MAX,
                 queue_max: int = limits.API_NONCE_QUEUE_MAX, wait_ms: int = limits.API_NONCE_WAIT_MS):
        assert 0 < batch_max <= queue_max
        self.engine = replay_engine
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.wait_ms = wait_ms
        self._cond = threading.Condition()
        self._pending: collections.deque = collections.deque()
        self._leading = False
        self._waiting = 0  # followers waiting for a commit
        self._since_purge = 0
        self.batches = 0  # transactions committed (tests, profiles)

    def remember_blocking(self, key_id: str, nonce: str, at_ms: int) -> bool:
        """From a worker thread (never the event loop): True when the nonce is new for this key,
        now committed; False when it was already used. Raises a 503 Problem when busy."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        deadline = time.monotonic() + self.wait_ms / 1000
        with self._cond:
            if len(self._pending) >= self.queue_max:
                raise Problem(503, "server_busy", "too many requests waiting for their nonce check; retry shortly",
                              headers={"Retry-After": "1"})
            self._pending.append((key_id, nonce, at_ms, fut))
        while True:
            with self._cond:
                while not fut.done() and self._leading:
                    left = deadline - time.monotonic()
                    if left <= 0:  # its sighting stays queued: committed later, spent, never accepted twice
                        raise _unavailable(f"the nonce store did not commit within {self.wait_ms} ms")
                    self._waiting += 1
                    try:
                        self._cond.wait(left)
                    finally:
                        self._waiting -= 1
                if fut.done():
                    return fut.result()
                self._leading = True
            # Lead: commit batches until our own sighting is answered and either nothing is left
            # or a waiting follower will lead the rest (sightings of requests that gave up are
            # never left behind without a leader).
            while True:
                with self._cond:
                    batch = [self._pending.popleft() for _ in range(min(self.batch_max, len(self._pending)))]
                try:
                    if batch:
                        self._commit(batch)
                except BaseException:  # a bug: never leave the others without a leader
                    with self._cond:
                        self._leading = False
                        self._cond.notify_all()
                    raise
                with self._cond:
                    handover = not batch or (fut.done() and (not self._pending or self._waiting > 0))
                    if handover:
                        self._leading = False
                    self._cond.notify_all()  # followers: answered, or one of them leads next
                if handover:
                    break
            return fut.result()

    def _commit(self, batch: list) -> None:
        try:
            fresh = apikeys.remember_nonces(self.engine, [(k, n, at) for k, n, at, _f in batch])
        except sa.exc.SQLAlchemyError as exc:  # database down or locked: these requests get 503
            log.warning("nonce_batch_failed", sightings=len(batch), error=str(exc))
            for *_x, f in batch:
                f.set_exception(_unavailable("the nonce store is unavailable"))
            return
        self.batches += 1
        for (*_x, f), ok in zip(batch, fresh):
            f.set_result(ok)
        self._since_purge += len(batch)
        if self._since_purge >= limits.API_NONCE_PURGE_EVERY_COUNT:
            self._since_purge = 0
            try:
                apikeys.purge_nonces(self.engine, now_ms())
            except sa.exc.SQLAlchemyError as exc:  # a busy database: the next purge takes them
                log.warning("nonce_purge_failed", error=str(exc))
