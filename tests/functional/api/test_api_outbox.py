"""The outbox and the records behind idempotency, at the storage level, on both databases:
an event exists if and only if its state change committed; workers never share a delivery;
stale idempotency leases are taken over; expired records start afresh."""

from __future__ import annotations

import concurrent.futures

import pytest
import sqlalchemy as sa
from api_helpers import assert_eq, fund

from api import idempotency
from api.errors import Problem
from node import limits, webhooks
from node.clients import ClientOpError, ClientOps
from node.store import open_store
from node.store.api_models import client_transfers, webhook_deliveries, webhook_events
from node.store.models import transfers
from tests.support.secrets_key import secret_box

BOX = secret_box()


@pytest.fixture
def store(db):
    s = open_store(db[0], schema=db[1])
    yield s
    s.dispose()


def _count(store, table, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def _setup(store):
    ops = ClientOps(store)
    ops.create_customer("cli_1", "acme", "Acme", "enterprise")
    ops.create_customer("cli_1", "beta", "Beta", "enterprise")
    fund(store, "acme.main", "USD", 1_000, "dep-1")
    webhooks.register_endpoint(store.engine, "cli_1", "http://127.0.0.1:9/h", ["transfer.*"], allow_insecure=True, box=BOX)
    return ops


class Crash(Exception):
    pass


def test_event_only_with_its_committed_transfer(store):
    ops = _setup(store)
    created, t = ops.create_internal_transfer("cli_1", "ok-1", "acme.main", "beta.main", "USD", 10)
    assert created
    assert_eq(_count(store, webhook_events, webhook_events.c.type == "transfer.created"), 1, "events after a transfer")
    assert_eq(_count(store, webhook_deliveries), 1, "deliveries fanned out")

    # Refused by the ledger: no event, no record.
    with pytest.raises(ClientOpError) as exc:
        ops.create_internal_transfer("cli_1", "too-big", "acme.main", "beta.main", "USD", 10_000)
    assert_eq(exc.value.code, "insufficient_funds", "refusal")
    # Crash inside the write, after the ledger and the outbox wrote: everything rolls back.
    def crash(_tx):
        raise Crash()

    store.before_commit_hook = crash  # test hook of the store: fail just before COMMIT
    with pytest.raises(Crash):
        ops.create_internal_transfer("cli_1", "crashed", "acme.main", "beta.main", "USD", 10)
    store.before_commit_hook = None
    assert_eq(_count(store, webhook_events), 1, "events after a refusal and a crash")
    assert_eq(_count(store, client_transfers), 1, "client transfer records")
    with store.engine.connect() as conn:
        ledger_ids = {r for (r,) in conn.execute(sa.select(transfers.c.id).where(transfers.c.id.like("trf_%")))}
    assert_eq(ledger_ids, {t.id}, "ledger transfers made through the API")
    # The crashed one can be retried and goes through once.
    created, _ = ops.create_internal_transfer("cli_1", "crashed", "acme.main", "beta.main", "USD", 10)
    assert created
    assert_eq(_count(store, webhook_events), 2, "events after the retry")


def test_two_workers_never_claim_the_same_delivery(store):
    _setup(store)
    ep = webhooks.list_endpoints(store.engine, "cli_1", 0, 10)[0][1]
    for _ in range(20):
        webhooks.ping(store.engine, "cli_1", ep.id)
    now = webhooks._now_ms() + 1

    def claim(_):
        return [d.id for d in webhooks.claim_due(store.engine, now, batch=limits.WEBHOOK_BATCH_COUNT, box=BOX)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(claim, range(4)))
    flat = [d for batch in claimed for d in batch]
    assert_eq(len(flat), len(set(flat)), f"a delivery claimed twice: {claimed}")
    assert_eq(len(flat), 20, "every due delivery claimed once")
    # Leased: not due again until the lease runs out.
    assert_eq(webhooks.claim_due(store.engine, now + 1, box=BOX), [], "claimed again inside the lease")
    assert_eq(len(webhooks.claim_due(store.engine, now + limits.WEBHOOK_LEASE_MS + 1, box=BOX)), 20, "due after the lease")


def test_idempotency_lease_takeover_and_expiry(store):
    e = store.engine
    fp = idempotency.fingerprint("POST", "/v1/x", b"{}")
    t0 = 1_800_000_000_000
    assert idempotency.begin(e, "cli_1", "k", fp, now_ms=t0, box=BOX) is None  # owned
    with pytest.raises(Problem) as exc:
        idempotency.begin(e, "cli_1", "k", fp, now_ms=t0 + 1, box=BOX)
    assert_eq(exc.value.code, "idempotency_request_in_progress", "while the first runs")
    # The first request's process died: after the lease, a retry takes the key over (once).
    later = t0 + limits.API_IDEMPOTENCY_LEASE_S * 1000 + 1
    assert idempotency.begin(e, "cli_1", "k", fp, now_ms=later, box=BOX) is None
    with pytest.raises(Problem):
        idempotency.begin(e, "cli_1", "k", fp, now_ms=later + 1, box=BOX)
    idempotency.finish(e, "cli_1", "k", idempotency.Stored(201, "application/json", b'{"id":1}'), box=BOX)
    stored = idempotency.begin(e, "cli_1", "k", fp, now_ms=later + 2, box=BOX)
    assert_eq(stored, idempotency.Stored(201, "application/json", b'{"id":1}'), "replay")
    # After the retention period the key is fresh again, and purge removes what expired.
    expired = t0 + limits.API_IDEMPOTENCY_TTL_S * 1000 + 1
    assert idempotency.begin(e, "cli_1", "k", idempotency.fingerprint("POST", "/v1/y", b""), now_ms=expired, box=BOX) is None
    assert idempotency.begin(e, "cli_1", "old", fp, now_ms=t0, box=BOX) is None
    assert_eq(idempotency.purge(e, now_ms=expired), 1, "purged records")
