"""The webhook delivery worker: claims due deliveries from the outbox and POSTs them.

Each attempt: a fresh `Custody-Signature` (t = now) over the exact stored body, an explicit
timeout on connect/read/write/pool (WEBHOOK_HTTP_TIMEOUT_MS), no redirects followed. A 2xx is
success; anything else (status, timeout, refused connection) schedules the next attempt with
exponential back-off until the settings' attempt budget is spent, then the delivery is
`failed` and can be re-sent through the API. An endpoint whose stored secret does not open
(tampered, or sealed under another key) is never sent to: the attempt fails, saying why.
"""

from __future__ import annotations

import threading
import time

import httpx
import sqlalchemy as sa

import node.log
from api.signing import webhook_signature
from node import limits, webhooks
from node.secretbox import SecretBox
from node.store.api_models import now_ms

log = node.log.get("api.webhooks")


class WebhookWorker:
    def __init__(self, engine: sa.Engine, *, box: SecretBox, backoff_base_ms: int, attempts_max: int, on_attempt=None):
        self.engine = engine
        self.box = box
        self.backoff_base_ms = backoff_base_ms
        self.attempts_max = attempts_max
        self.on_attempt = on_attempt  # metrics hook: on_attempt(outcome: str)
        timeout = httpx.Timeout(limits.WEBHOOK_HTTP_TIMEOUT_MS / 1000)
        self.http = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One pass: claim a batch and attempt each. Returns how many were attempted."""
        due = webhooks.claim_due(self.engine, now_ms(), box=self.box)
        for d in due:
            self._attempt(d)
        return len(due)

    def _attempt(self, d: webhooks.DueDelivery) -> None:
        status_code = None
        error = None
        if d.secret is None:
            ok, error = False, d.secret_error
            log.error("webhook_secret_unreadable", delivery=d.id, reason=d.secret_error)
        else:
            t = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "custody-node-webhooks/1",
                "Custody-Event-Id": d.event_id,
                "Custody-Signature": webhook_signature(d.secret, t, d.payload),
            }
            try:
                resp = self.http.post(d.url, content=d.payload, headers=headers)
                status_code = resp.status_code
                ok = 200 <= status_code < 300
                if not ok:
                    error = f"HTTP {status_code}: {resp.text[: limits.WEBHOOK_RESPONSE_BYTES_KEPT_MAX]}"
            except httpx.HTTPError as exc:
                ok = False
                error = f"{type(exc).__name__}: {exc}"[: limits.WEBHOOK_RESPONSE_BYTES_KEPT_MAX]
        status = webhooks.record_attempt(
            self.engine,
            d.id,
            ok=ok,
            status_code=status_code,
            error=error,
            now_ms=now_ms(),
            base_ms=self.backoff_base_ms,
            attempts_max=self.attempts_max,
        )
        log.info("webhook_attempt", delivery=d.id, event_id=d.event_id, attempt=d.attempts + 1, status=status, http=status_code)
        if self.on_attempt:
            self.on_attempt(status)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except Exception as exc:  # a database hiccup must not kill the worker; it is logged
                log.error("webhook_worker_pass_failed", exc_info=exc)
                n = 0
            if n == 0:
                self._stop.wait(limits.WEBHOOK_POLL_MS / 1000)

    def start(self) -> None:
        assert self._thread is None
        self._thread = threading.Thread(target=self._loop, name="webhook-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = limits.WEBHOOK_HTTP_TIMEOUT_MS / 1000 + 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.http.close()
