"""Group commit of request nonces: one writer thread per API process.

Every signed request's nonce must be durable-ish (see make_replay_engine) and unique per key
across replicas before the request runs. Written one transaction per request, the nonce was
the largest cost of a signed read (a pooled connection, BEGIN IMMEDIATE, INSERT, COMMIT, each
through SQLAlchemy, plus a thread-pool hop). Here requests queue their sighting and wait on a
future; the writer takes whatever is queued (at most API_NONCE_BATCH_MAX), records it with
`apikeys.remember_nonces` in one transaction and answers each request after the commit. The
checks are unchanged: the database's primary key still decides "new or replayed", across
replicas, and no request runs before its nonce is committed.

Bounds: the queue holds at most API_NONCE_QUEUE_MAX sightings (then 503 server_busy); a request
waits at most API_NONCE_WAIT_MS for its commit (then 503 nonce_store_unavailable, the request
did not run). A failed transaction fails its whole batch the same way. The writer also purges
expired nonces, one bounded batch every API_NONCE_PURGE_EVERY_COUNT sightings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading

import sqlalchemy as sa

import node.log
from api.errors import Problem
from node import apikeys, limits
from node.store.api_models import now_ms

log = node.log.get("api.nonces")

_STOP = object()


def _unavailable(detail: str) -> Problem:
    return Problem(503, "nonce_store_unavailable", detail, headers={"Retry-After": "1"})


class NonceWriter:
    def __init__(self, replay_engine: sa.Engine, *, batch_max: int = limits.API_NONCE_BATCH_MAX,
                 queue_max: int = limits.API_NONCE_QUEUE_MAX):
        assert 0 < batch_max <= queue_max
        self.engine = replay_engine
        self.batch_max = batch_max
        self._queue: queue.Queue = queue.Queue(maxsize=queue_max)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._since_purge = 0
        self.batches = 0  # transactions committed (for tests and the benchmark's profile)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="api-nonce-writer", daemon=True)
                t.start()
                self._thread = t

    def submit(self, key_id: str, nonce: str, at_ms: int) -> concurrent.futures.Future:
        """Queues one sighting; the future resolves to True (new) or False (replayed), or to a
        503 Problem. Raises the 503 at once when the queue is full."""
        self._ensure_started()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._queue.put_nowait((key_id, nonce, at_ms, fut))
        except queue.Full:
            raise Problem(503, "server_busy", "too many requests waiting for their nonce check; retry shortly",
                          headers={"Retry-After": "1"}) from None
        return fut

    async def remember(self, key_id: str, nonce: str, at_ms: int) -> bool:
        """From the event loop: True when the nonce is new for this key (now committed)."""
        fut = self.submit(key_id, nonce, at_ms)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), limits.API_NONCE_WAIT_MS / 1000)
        except asyncio.TimeoutError:
            raise _unavailable(f"the nonce store did not commit within {limits.API_NONCE_WAIT_MS} ms") from None

    def remember_blocking(self, key_id: str, nonce: str, at_ms: int) -> bool:
        """From a worker thread: the same as `remember`."""
        fut = self.submit(key_id, nonce, at_ms)
        try:
            return fut.result(timeout=limits.API_NONCE_WAIT_MS / 1000)
        except concurrent.futures.TimeoutError:
            raise _unavailable(f"the nonce store did not commit within {limits.API_NONCE_WAIT_MS} ms") from None

    def stop(self) -> None:
        """Answers what is queued, then ends the thread (bounded wait)."""
        if self._thread is None:
            return
        self._queue.put(_STOP, timeout=limits.API_NONCE_WAIT_MS / 1000)
        self._thread.join(timeout=limits.API_NONCE_WAIT_MS / 1000)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch, stopping = [], False
            while item is not None:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_max:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list) -> None:
        live = [(k, n, at, f) for k, n, at, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            fresh = apikeys.remember_nonces(self.engine, [(k, n, at) for k, n, at, _f in live])
        except sa.exc.SQLAlchemyError as exc:  # database down or locked: these requests get 503
            log.warning("nonce_batch_failed", sightings=len(live), error=str(exc))
            for *_x, f in live:
                f.set_exception(_unavailable("the nonce store is unavailable"))
            return
        self.batches += 1
        for (*_x, f), ok in zip(live, fresh):
            f.set_result(ok)
        self._since_purge += len(live)
        if self._since_purge >= limits.API_NONCE_PURGE_EVERY_COUNT:
            self._since_purge = 0
            try:
                apikeys.purge_nonces(self.engine, now_ms())
            except sa.exc.SQLAlchemyError as exc:  # a busy database: the next purge takes them
                log.warning("nonce_purge_failed", error=str(exc))
