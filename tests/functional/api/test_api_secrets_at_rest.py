"""Webhook secrets at rest, on SQLite and PostgreSQL, through the real app over HTTP: a secret
shown to the client is nowhere in the database in the clear (not in the endpoint row, not in
the stored idempotent response, not in any table); a replay still returns it; the worker signs
with it; a sealed value moved to another row does not open, and then nothing is sent and
nothing is run again; rows written before sealing are sealed when the app starts; rotating the
key reseals everything under the new one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from api_helpers import assert_eq, assert_problem, signed

from api.webhook_worker import WebhookWorker
from node import limits, webhooks
from node.secretbox import SecretBox, write_new_key
from node.store.api_models import idempotency_records, webhook_deliveries, webhook_endpoints
from node.store.api_models import now_ms

pytestmark = pytest.mark.functional


def post(api, holder, path, body, key=None):
    headers, content = signed(holder, "POST", path, body, extra={"Idempotency-Key": key} if key else None)
    return api.http.post(path, content=content, headers=headers)


def tables_holding(api, needle: str) -> list[str]:
    """Every table of the store with a value containing `needle` (text or bytes)."""
    md = sa.MetaData(schema=api.settings.database_schema)
    with api.engine.connect() as conn:
        md.reflect(conn)
        found = []
        for table in md.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for v in row:
                    text = bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v)
                    if needle in text:
                        found.append(table.name)
                        break
                else:
                    continue
                break
    return found


def register(api, admin, url="http://127.0.0.1:9/h", key="reg-1"):
    r = post(api, admin, "/v1/webhook-endpoints", {"url": url, "event_types": ["*"]}, key=key)
    assert_eq(r.status_code, 201, f"register: {r.text}")
    return r


def test_a_secret_is_shown_once_replayed_and_never_stored_in_the_clear(api_both):
    api = api_both
    admin = api.key(["admin", "read"])
    first = register(api, admin)
    endpoint_id, secret = first.json()["id"], first.json()["secret"]
    assert secret.startswith("whsec_")
    assert_eq(tables_holding(api, secret), [], "tables holding the secret in the clear")
    assert_eq(tables_holding(api, secret[6:26]), [], "tables holding part of it")
    # The client lost the response: the same request with the same key gets the same secret.
    again = register(api, admin)
    assert_eq((again.headers.get("idempotent-replayed"), again.content), ("true", first.content), "replay")
    rotated = post(api, admin, f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret", None, key="rot-1")
    assert_eq(rotated.status_code, 200, rotated.text)
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    assert_eq(tables_holding(api, new_secret), [], "tables holding the rotated secret")
    # The worker signs with the secret the client holds now.
    event_id = post(api, admin, f"/v1/webhook-endpoints/{endpoint_id}/ping", None).json()["event_id"]
    due = webhooks.claim_due(api.engine, now_ms(), box=api.app.state.ctx.box)
    assert_eq([(d.event_id, d.secret, d.secret_error) for d in due], [(event_id, new_secret, None)], "claimed")


def test_a_sealed_secret_moved_to_another_endpoint_does_not_open_and_nothing_is_sent(api_both):
    api = api_both
    admin = api.key(["admin", "read"])
    a = register(api, admin, "http://127.0.0.1:9/a", key="a").json()
    b = register(api, admin, "http://127.0.0.1:9/b", key="b").json()
    with api.engine.begin() as conn:
        sealed_a = conn.execute(sa.select(webhook_endpoints.c.secret).where(webhook_endpoints.c.id == a["id"])).scalar_one()
        conn.execute(webhook_endpoints.update().where(webhook_endpoints.c.id == b["id"]).values(secret=sealed_a))
    post(api, admin, f"/v1/webhook-endpoints/{b['id']}/ping", None)
    worker = WebhookWorker(api.engine, box=api.app.state.ctx.box, backoff_base_ms=1_000, attempts_max=3)
    try:
        assert_eq(worker.run_once(), 1, "attempted")
    finally:
        worker.http.close()
    with api.engine.connect() as conn:
        d = conn.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == b["id"])).one()
    # Had it sent anything, port 9 would have refused the connection: the error would say so.
    assert_eq((d.status, d.attempts, d.last_status_code), ("pending", 1, None), "attempt recorded, nothing sent")
    assert d.last_error.startswith("endpoint secret unreadable: sealed_value_tampered"), d.last_error


def test_a_stored_response_that_does_not_open_is_refused_and_not_run_again(api_both):
    api = api_both
    admin = api.key(["admin", "read"])
    register(api, admin, "http://127.0.0.1:9/a", key="k-a")
    register(api, admin, "http://127.0.0.1:9/b", key="k-b")
    t = idempotency_records
    with api.engine.begin() as conn:
        body_a = conn.execute(sa.select(t.c.response_body).where(t.c.idempotency_key == "k-a")).scalar_one()
        conn.execute(t.update().where(t.c.idempotency_key == "k-b").values(response_body=body_a))
    r = post(api, admin, "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/b", "event_types": ["*"]}, key="k-b")
    assert_problem(r, 500, "stored_response_unreadable")
    with api.engine.connect() as conn:
        assert_eq(conn.execute(sa.select(sa.func.count()).select_from(webhook_endpoints)).scalar_one(), 2, "endpoints")


def test_rows_from_before_sealing_are_sealed_when_the_app_starts(harness_factory, db):
    url, schema = db
    old = harness_factory(url, schema)
    admin = old.key(["admin", "read"])
    first = register(old, admin, key="legacy")
    endpoint_id = first.json()["id"]
    # As a node before sealing stored them: the secret and the response body in the clear.
    legacy_secret = webhooks.new_secret()
    legacy_body = first.content.replace(first.json()["secret"].encode(), legacy_secret.encode())
    with old.engine.begin() as conn:
        conn.execute(webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(secret=legacy_secret))
        conn.execute(idempotency_records.update().where(idempotency_records.c.idempotency_key == "legacy")
                     .values(response_body=legacy_body))
    assert tables_holding(old, legacy_secret)
    new = harness_factory(url, schema)  # the upgraded app starts over the same database
    assert_eq(tables_holding(new, legacy_secret), [], "tables holding the old secret after the start")
    replay = register(new, admin, key="legacy")
    assert_eq(replay.content, legacy_body, "the replay still returns the stored response")
    post(new, admin, f"/v1/webhook-endpoints/{endpoint_id}/ping", None)
    due = webhooks.claim_due(new.engine, now_ms(), box=new.app.state.ctx.box)
    assert_eq([d.secret for d in due], [legacy_secret], "the worker signs with the old secret")


def test_rotating_the_key_reseals_everything_and_the_old_key_can_go(harness_factory, db, tmp_path):
    url, schema = db
    key_a, key_b = tmp_path / "a.key", tmp_path / "b.key"
    write_new_key(key_a)
    write_new_key(key_b)
    old = harness_factory(url, schema, secrets_key_file=key_a)
    admin = old.key(["admin", "read"])
    first = register(old, admin, key="before-rotation")
    endpoint_id, secret = first.json()["id"], first.json()["secret"]
    # The rotation: B is the key now, A only opens; the app reseals at start.
    rotated = harness_factory(url, schema, secrets_key_file=key_b, previous_secrets_key_files=[key_a])
    box_b = SecretBox.from_file(key_b)
    assert_eq(_under(rotated, box_b), (True, True), "endpoint secret and stored response under B")
    # A itself is gone from the configuration: everything still opens.
    after = harness_factory(url, schema, secrets_key_file=key_b)
    assert_eq(register(after, admin, key="before-rotation").content, first.content, "the replay after the rotation")
    post(after, admin, f"/v1/webhook-endpoints/{endpoint_id}/ping", None)
    due = webhooks.claim_due(after.engine, now_ms(), box=after.app.state.ctx.box)
    assert_eq([(d.secret, d.secret_error) for d in due], [(secret, None)], "the worker opens the resealed secret")
    assert_eq(tables_holding(after, secret), [], "tables holding the secret in the clear")
    # And A alone no longer opens anything: refused, not run again, nothing sent.
    stale = harness_factory(url, schema, secrets_key_file=key_a)
    r = post(stale, admin, "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, key="before-rotation")
    assert_problem(r, 500, "stored_response_unreadable")
    post(stale, admin, f"/v1/webhook-endpoints/{endpoint_id}/ping", None)
    due = webhooks.claim_due(stale.engine, now_ms() + limits.WEBHOOK_LEASE_MS + 1, box=stale.app.state.ctx.box)
    assert due and all(d.secret is None and "sealed_under_another_key" in d.secret_error for d in due), due


def _under(api, box) -> tuple[bool, bool]:
    with api.engine.connect() as conn:
        secrets_ = conn.execute(sa.select(webhook_endpoints.c.secret)).scalars().all()
        bodies = conn.execute(sa.select(idempotency_records.c.response_body)
                              .where(idempotency_records.c.state == "done")).scalars().all()
    return all(box.is_current_text(s) for s in secrets_), all(box.is_current(bytes(b)) for b in bodies)
