"""Webhooks end to end with real processes: the API server (`custody api serve`, its delivery
worker inside) and an independent receiver process that verifies Custody-Signature itself.

Story: an admin key is bootstrapped with the CLI; an endpoint is registered; a transfer made
over HTTP produces `transfer.created`, which the receiver refuses twice (500) and accepts on
the third attempt (exponential back-off in between); the secret is rotated and the next event
verifies under the new secret only; with the receiver down, a delivery ends `failed`, shows
up in the failed list, and arrives after `resend` once the receiver is back."""

from __future__ import annotations

import httpx
import pytest
from api_helpers import assert_eq, fund
from api_procs import bootstrap_key, received, start_api, start_receiver

from api.client import CustodyClient, load_private_key
from api.signing import webhook_signature
from node.store import open_store
from support.procs import wait_until

pytestmark = pytest.mark.functional


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


def test_webhooks_delivered_signed_retried_rotated_and_resent(tmp_path, procs):
    url = f"sqlite:///{tmp_path / 'node.db'}"
    open_store(url).dispose()  # migrate once before two processes use the file
    key_id, pem = bootstrap_key(tmp_path, url, "admin,read,withdraw")
    secret_file = tmp_path / "secret"
    secret_file.write_text("not-yet")
    receiver, hook_url, out = start_receiver(tmp_path, secret_file, fail_first=2)
    procs.append(receiver)
    api_proc, api_url = start_api(tmp_path, url, webhook_backoff_base_ms=200, webhook_attempts_max=3)
    procs.append(api_proc)
    c = CustodyClient(api_url, key_id, load_private_key(pem), timeout_s=10)

    ep = c.register_webhook(hook_url, ["transfer.*", "endpoint.ping"])
    secret_file.write_text(ep["secret"])
    c.create_customer("acme", "Acme")
    c.create_customer("beta", "Beta")
    store = open_store(url)
    fund(store, "acme.main", "USD", 5_000, "dep-1")
    store.dispose()

    # 1. transfer.created: two refusals, then accepted; signed every time.
    t = c.create_transfer("pay-1", "acme.main", "beta.main", "USD", 1_234)
    accepted = wait_until(
        lambda: [r for r in received(out) if r["answered"] == 200], 30, "the receiver accepted transfer.created"
    )
    attempts = [r for r in received(out) if r["event_id"] == accepted[0]["event_id"]]
    assert_eq([r["answered"] for r in attempts], [500, 500, 200], "answers per attempt")
    assert all(r["verified"] for r in attempts), attempts
    event = accepted[0]["event"]
    assert_eq(event["type"], "transfer.created", "event type")
    assert_eq(event["data"]["id"], t["id"], "event's transfer")
    assert_eq(event["data"]["amount"], "1234", "event amount (a decimal string)")
    deliveries = c.webhook_deliveries(ep["id"])
    assert_eq([(d["status"], d["attempts"]) for d in deliveries], [("succeeded", 3)], "delivery record")

    # 2. Rotation: the receiver now knows only the new secret; the ping verifies under it.
    old_secret = ep["secret"]
    rotated = c.rotate_webhook_secret(ep["id"])
    assert rotated["secret"] != old_secret
    secret_file.write_text(rotated["secret"])
    ping = c.ping_webhook(ep["id"])
    got = wait_until(
        lambda: [r for r in received(out) if r["event_id"] == ping["event_id"] and r["answered"] == 200],
        30,
        "the ping arrived, verified under the rotated secret",
    )
    assert got[0]["verified"]

    # 3. Receiver down: the delivery fails after the attempt budget; resend delivers it.
    receiver.stop()
    port = int(hook_url.split(":")[2].split("/")[0])
    ping2 = c.ping_webhook(ep["id"])
    failed = wait_until(
        lambda: [d for d in c.webhook_deliveries(ep["id"], status="failed") if d["event_id"] == ping2["event_id"]],
        30,
        "the undeliverable ping is listed as failed",
    )
    assert_eq(failed[0]["attempts"], 3, "attempts before failing")
    assert failed[0]["last_error"], failed[0]
    receiver2, _, out2 = start_receiver(tmp_path, secret_file, port=port)
    procs.append(receiver2)
    c.resend_delivery(failed[0]["id"])
    wait_until(
        lambda: [r for r in received(out2) if r["event_id"] == ping2["event_id"] and r["answered"] == 200],
        30,
        "the re-sent ping arrived",
    )
    assert_eq(c.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", {"status": "failed"})["data"], [], "failed list after resend")


def test_the_receiver_rejects_a_wrong_or_old_signature(tmp_path, procs):
    """The receiver is a real check: a body signed with another secret, or too long ago, is refused."""
    import time

    secret_file = tmp_path / "secret"
    secret_file.write_text("whsec_right")
    receiver, hook_url, out = start_receiver(tmp_path, secret_file)
    procs.append(receiver)
    body = b'{"id":"evt_x","type":"endpoint.ping"}'
    now = int(time.time())
    cases = [
        (webhook_signature("whsec_wrong", now, body), 400),
        (webhook_signature("whsec_right", now - 301, body), 400),
        (webhook_signature("whsec_right", now, body), 200),
    ]
    for header, want in cases:
        r = httpx.post(hook_url, content=body, headers={"Custody-Signature": header, "Custody-Event-Id": "evt_x"}, timeout=5)
        assert_eq(r.status_code, want, f"receiver answer to {header[:20]}…")
    assert_eq([r["reason"] for r in received(out)], ["mismatch", "too_old", None], "receiver's reasons")
