"""Webhooks: endpoints, the durable outbox, and delivery bookkeeping.

`emit(conn, ...)` writes an event and one delivery per matching endpoint *on the caller's
connection*, so an event exists if and only if the state change it reports was committed.
The delivery worker (api/webhook_worker.py) claims due deliveries with a lease, POSTs them,
and records each attempt here: success, or the next attempt after exponential back-off, or
`failed` after the last attempt. Delivery is therefore at-least-once; receivers de-duplicate
on the event id.

Endpoint secrets are stored sealed (node/secretbox.py, purpose "webhook-secret", bound to the
endpoint id): the functions that write or read one take the API's SecretBox.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random
import secrets
import urllib.parse
from datetime import datetime, timezone

import sqlalchemy as sa

from node import limits
from node.store.api_models import now_ms as _now_ms
from node.store.api_models import write_tx
from node.store.api_models import webhook_deliveries as dt
from node.store.api_models import webhook_endpoints as et
from node.store.api_models import webhook_events as evt
from node.apikeys import new_id
from node.secretbox import SecretBox, SecretBoxError, sealed_text_len

# Event families of the conventions; an endpoint subscribes with exact types or "<family>.*".
EVENT_FAMILIES = ("deposit", "withdrawal", "transfer", "approval", "reserves", "endpoint")
SECRET_PURPOSE = "webhook-secret"
PLAINTEXT_SECRET_PREFIX = "whsec_"  # what a secret stored before sealing looks like


class WebhookError(Exception):
    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field


@dataclasses.dataclass(frozen=True)
class Endpoint:
    id: str
    client_id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    created_at_ms: int
    secret_rotated_at_ms: int


@dataclasses.dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at_ms: int
    last_status_code: int | None
    last_error: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclasses.dataclass(frozen=True)
class DueDelivery:
    """What the worker needs to make one attempt. `secret` is None when the stored secret does
    not open (`secret_error` says why): the attempt then fails without sending anything."""

    id: str
    event_id: str
    url: str
    secret: str | None
    payload: bytes
    attempts: int
    secret_error: str | None = None


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def new_secret() -> str:
    return PLAINTEXT_SECRET_PREFIX + secrets.token_urlsafe(32)


def _sealed(box: SecretBox, endpoint_id: str, secret: str) -> str:
    return box.seal_text(secret.encode(), purpose=SECRET_PURPOSE, context=endpoint_id)


def _opened(box: SecretBox, endpoint_id: str, stored: str) -> str:
    return box.open_text(stored, purpose=SECRET_PURPOSE, context=endpoint_id).decode()


assert sealed_text_len(len(new_secret())) <= et.c.secret.type.length


def validate_url(url: str, allow_insecure: bool) -> None:
    if len(url) > limits.WEBHOOK_URL_LEN_MAX:
        raise WebhookError("url_too_long", f"at most {limits.WEBHOOK_URL_LEN_MAX} characters", "url")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise WebhookError("invalid_url", "not a URL", "url") from None
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookError("invalid_url", "an absolute http(s) URL is required", "url")
    if parts.username or parts.password:
        raise WebhookError("invalid_url", "credentials in the URL are not accepted", "url")
    if allow_insecure:
        return
    if parts.scheme != "https":
        raise WebhookError("url_must_be_https", "webhook URLs must use https", "url")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host == "localhost" or (ip is not None and (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved)):
        raise WebhookError("url_not_public", "webhook URLs must not point at private or loopback addresses", "url")


def validate_event_types(types: list[str]) -> tuple[str, ...]:
    if not types or len(types) > limits.WEBHOOK_EVENT_TYPES_PER_ENDPOINT_MAX:
        raise WebhookError(
            "invalid_event_types",
            f"give 1-{limits.WEBHOOK_EVENT_TYPES_PER_ENDPOINT_MAX} event types",
            "event_types",
        )
    for t in types:
        family, dot, rest = t.partition(".")
        if t == "*":
            continue
        if family not in EVENT_FAMILIES or (dot and not rest) or len(t) > 64 or " " in t:
            raise WebhookError("unknown_event_type", f"unknown event type {t!r}; families: {list(EVENT_FAMILIES)}", "event_types")
    return tuple(sorted(set(types)))


def _matches(patterns: tuple[str, ...], event_type: str) -> bool:
    family = event_type.split(".", 1)[0]
    return any(p in ("*", event_type, family, f"{family}.*") for p in patterns)


def _endpoint(row) -> Endpoint:
    return Endpoint(
        id=row.id,
        client_id=row.client_id,
        url=row.url,
        event_types=tuple(row.event_types.split()),
        enabled=row.enabled,
        created_at_ms=row.created_at_ms,
        secret_rotated_at_ms=row.secret_rotated_at_ms,
    )


def register_endpoint(
    engine: sa.Engine, client_id: str, url: str, event_types: list[str], allow_insecure: bool, *, box: SecretBox
) -> tuple[Endpoint, str]:
    """Returns the endpoint and its secret (shown this once). Refusals: invalid_url,
    url_must_be_https, url_not_public, invalid_event_types, unknown_event_type, too_many_endpoints."""
    validate_url(url, allow_insecure)
    types = validate_event_types(event_types)
    secret = new_secret()
    at = _now_ms()
    endpoint_id = new_id("whe")
    with write_tx(engine) as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(et).where(et.c.client_id == client_id)).scalar_one()
        if count >= limits.WEBHOOK_ENDPOINTS_PER_CLIENT_MAX:
            raise WebhookError("too_many_endpoints", f"at most {limits.WEBHOOK_ENDPOINTS_PER_CLIENT_MAX} endpoints")
        conn.execute(
            et.insert().values(
                id=endpoint_id,
                client_id=client_id,
                url=url,
                event_types=" ".join(types),
                secret=_sealed(box, endpoint_id, secret),
                enabled=True,
                created_at_ms=at,
                secret_rotated_at_ms=at,
            )
        )
        row = conn.execute(sa.select(et).where(et.c.id == endpoint_id)).one()
    return _endpoint(row), secret


def get_endpoint(engine: sa.Engine, client_id: str, endpoint_id: str) -> Endpoint:
    with engine.connect() as conn:
        row = conn.execute(sa.select(et).where(et.c.id == endpoint_id, et.c.client_id == client_id)).first()
    if row is None:
        raise WebhookError("webhook_endpoint_not_found", f"no webhook endpoint {endpoint_id}")
    return _endpoint(row)


def list_endpoints(engine: sa.Engine, client_id: str, after_seq: int, limit: int) -> list[tuple[int, Endpoint]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(et).where(et.c.client_id == client_id, et.c.seq > after_seq).order_by(et.c.seq).limit(limit)
        ).all()
    return [(r.seq, _endpoint(r)) for r in rows]


def rotate_secret(engine: sa.Engine, client_id: str, endpoint_id: str, *, box: SecretBox) -> tuple[Endpoint, str]:
    """The new secret signs every attempt from now on (pending retries included)."""
    secret = new_secret()
    with write_tx(engine) as conn:
        n = conn.execute(
            et.update()
            .where(et.c.id == endpoint_id, et.c.client_id == client_id)
            .values(secret=_sealed(box, endpoint_id, secret), secret_rotated_at_ms=_now_ms())
        ).rowcount
        if n != 1:
            raise WebhookError("webhook_endpoint_not_found", f"no webhook endpoint {endpoint_id}")
        row = conn.execute(sa.select(et).where(et.c.id == endpoint_id)).one()
    return _endpoint(row), secret


def emit(
    conn: sa.Connection,
    client_id: str,
    event_type: str,
    data: dict,
    at_ms: int | None = None,
    only_endpoint_id: str | None = None,
) -> str:
    """Writes the event to the outbox on `conn` (the caller's transaction) with one delivery
    per enabled endpoint of the client that subscribes to its type (or to `only_endpoint_id`,
    for a ping). Returns the event id."""
    assert event_type.split(".", 1)[0] in EVENT_FAMILIES, f"unknown event family: {event_type}"
    at_ms = _now_ms() if at_ms is None else at_ms
    event_id = new_id("evt")
    payload = json.dumps(
        {"id": event_id, "type": event_type, "created_at": rfc3339(at_ms), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
    assert len(payload) <= limits.WEBHOOK_PAYLOAD_BYTES_MAX, "event payload over WEBHOOK_PAYLOAD_BYTES_MAX"
    conn.execute(evt.insert().values(id=event_id, client_id=client_id, type=event_type, payload=payload, created_at_ms=at_ms))
    q = sa.select(et).where(et.c.client_id == client_id, et.c.enabled.is_(True))
    if only_endpoint_id is not None:
        q = q.where(et.c.id == only_endpoint_id)
    for ep in conn.execute(q).all():
        if only_endpoint_id is not None or _matches(tuple(ep.event_types.split()), event_type):
            conn.execute(
                dt.insert().values(
                    id=new_id("whd"),
                    event_id=event_id,
                    endpoint_id=ep.id,
                    client_id=client_id,
                    status="pending",
                    attempts=0,
                    next_attempt_at_ms=at_ms,
                    locked_until_ms=0,
                    created_at_ms=at_ms,
                    updated_at_ms=at_ms,
                )
            )
    return event_id


def emit_many(conn: sa.Connection, events: list[tuple[str, str, dict]], at_ms: int | None = None) -> list[str]:
    """`emit` for a batch of (client_id, event_type, data) on the caller's transaction: the
    same rows, in order, with one statement per table and one endpoint lookup per client
    (a deposit sync writes hundreds of events in one write). Returns the event ids."""
    if not events:
        return []
    at_ms = _now_ms() if at_ms is None else at_ms
    created = rfc3339(at_ms)
    rows, ids = [], []
    for client_id, event_type, data in events:
        assert event_type.split(".", 1)[0] in EVENT_FAMILIES, f"unknown event family: {event_type}"
        event_id = new_id("evt")
        payload = json.dumps({"id": event_id, "type": event_type, "created_at": created, "data": data},
                             separators=(",", ":"), sort_keys=True)
        assert len(payload) <= limits.WEBHOOK_PAYLOAD_BYTES_MAX, "event payload over WEBHOOK_PAYLOAD_BYTES_MAX"
        rows.append({"id": event_id, "client_id": client_id, "type": event_type, "payload": payload, "created_at_ms": at_ms})
        ids.append(event_id)
    conn.execute(evt.insert(), rows)
    clients = sorted({r["client_id"] for r in rows})
    endpoints = conn.execute(sa.select(et).where(et.c.client_id.in_(clients), et.c.enabled.is_(True))).all()
    deliveries = []
    for r in rows:
        for ep in endpoints:
            if ep.client_id == r["client_id"] and _matches(tuple(ep.event_types.split()), r["type"]):
                deliveries.append({"id": new_id("whd"), "event_id": r["id"], "endpoint_id": ep.id, "client_id": ep.client_id,
                                   "status": "pending", "attempts": 0, "next_attempt_at_ms": at_ms, "locked_until_ms": 0,
                                   "created_at_ms": at_ms, "updated_at_ms": at_ms})
    if deliveries:
        conn.execute(dt.insert(), deliveries)
    return ids


def ping(engine: sa.Engine, client_id: str, endpoint_id: str) -> str:
    """Queues an `endpoint.ping` event to this one endpoint; returns the event id."""
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(et.c.id).where(et.c.id == endpoint_id, et.c.client_id == client_id)).first()
        if row is None:
            raise WebhookError("webhook_endpoint_not_found", f"no webhook endpoint {endpoint_id}")
        return emit(conn, client_id, "endpoint.ping", {"endpoint_id": endpoint_id}, only_endpoint_id=endpoint_id)


def _delivery_select():
    return sa.select(dt, evt.c.type.label("event_type")).join(evt, evt.c.id == dt.c.event_id)


def _delivery(row) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        endpoint_id=row.endpoint_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at_ms=row.next_attempt_at_ms,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


DELIVERY_STATUSES = ("pending", "delivering", "succeeded", "failed")


def list_deliveries(
    engine: sa.Engine, client_id: str, endpoint_id: str, status: str | None, after_seq: int, limit: int
) -> list[tuple[int, Delivery]]:
    get_endpoint(engine, client_id, endpoint_id)  # webhook_endpoint_not_found
    q = _delivery_select().where(dt.c.endpoint_id == endpoint_id, dt.c.client_id == client_id, dt.c.seq > after_seq)
    if status is not None:
        assert status in DELIVERY_STATUSES
        q = q.where(dt.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(dt.c.seq).limit(limit)).all()
    return [(r.seq, _delivery(r)) for r in rows]


def get_delivery(engine: sa.Engine, client_id: str, delivery_id: str) -> Delivery:
    with engine.connect() as conn:
        row = conn.execute(_delivery_select().where(dt.c.id == delivery_id, dt.c.client_id == client_id)).first()
    if row is None:
        raise WebhookError("webhook_delivery_not_found", f"no webhook delivery {delivery_id}")
    return _delivery(row)


def resend(engine: sa.Engine, client_id: str, delivery_id: str) -> Delivery:
    """Queues a failed or succeeded delivery again with a fresh attempt budget. Refusals:
    webhook_delivery_not_found, delivery_already_queued (pending or in flight)."""
    at = _now_ms()
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(dt).where(dt.c.id == delivery_id, dt.c.client_id == client_id)).first()
        if row is None:
            raise WebhookError("webhook_delivery_not_found", f"no webhook delivery {delivery_id}")
        if row.status in ("pending", "delivering"):
            raise WebhookError("delivery_already_queued", f"delivery {delivery_id} is {row.status}")
        conn.execute(
            dt.update()
            .where(dt.c.id == delivery_id, dt.c.status == row.status)
            .values(status="pending", attempts=0, next_attempt_at_ms=at, locked_until_ms=0, updated_at_ms=at)
        )
    return get_delivery(engine, client_id, delivery_id)


def claim_due(engine: sa.Engine, now_ms: int, batch: int = limits.WEBHOOK_BATCH_COUNT, *, box: SecretBox) -> list[DueDelivery]:
    """Leases up to `batch` due deliveries to this worker for WEBHOOK_LEASE_MS. A delivery
    whose worker died mid-attempt (`delivering`, lease run out) is due again."""
    due = sa.or_(
        sa.and_(dt.c.status == "pending", dt.c.next_attempt_at_ms <= now_ms),
        sa.and_(dt.c.status == "delivering", dt.c.locked_until_ms < now_ms),
    )
    out = []
    with write_tx(engine) as conn:
        rows = conn.execute(
            sa.select(dt.c.id, dt.c.status, dt.c.locked_until_ms).where(due).order_by(dt.c.next_attempt_at_ms).limit(batch)
        ).all()
        for r in rows:
            # Conditional on what we read: of two workers, one wins each row.
            won = conn.execute(
                dt.update()
                .where(dt.c.id == r.id, dt.c.status == r.status, dt.c.locked_until_ms == r.locked_until_ms)
                .values(status="delivering", locked_until_ms=now_ms + limits.WEBHOOK_LEASE_MS, updated_at_ms=now_ms)
            ).rowcount
            if won != 1:
                continue
            full = conn.execute(
                sa.select(dt.c.id, dt.c.event_id, dt.c.attempts, et.c.id.label("endpoint_id"), et.c.url, et.c.secret,
                          evt.c.payload)
                .join(et, et.c.id == dt.c.endpoint_id)
                .join(evt, evt.c.id == dt.c.event_id)
                .where(dt.c.id == r.id)
            ).one()
            try:
                secret, secret_error = _opened(box, full.endpoint_id, full.secret), None
            except SecretBoxError as exc:
                secret, secret_error = None, f"endpoint secret unreadable: {exc}"
            out.append(
                DueDelivery(
                    id=full.id,
                    event_id=full.event_id,
                    url=full.url,
                    secret=secret,
                    payload=full.payload.encode("utf-8"),
                    attempts=full.attempts,
                    secret_error=secret_error,
                )
            )
    return out


def reseal_secrets(engine: sa.Engine, box: SecretBox) -> int:
    """Brings every stored endpoint secret under the box's current key: one stored before
    secrets were sealed (`whsec_...`, in the clear) is sealed, one under a previous key (after
    a rotation) is resealed. A value that opens under none of the keys is left as it is: the
    worker reports it on each delivery. Each update is conditional on the value read, so
    replicas starting together agree. Returns how many were (re)sealed."""
    done, after = 0, ""
    while True:
        with write_tx(engine) as conn:
            rows = conn.execute(
                sa.select(et.c.id, et.c.secret).where(et.c.id > after).order_by(et.c.id).limit(limits.WEBHOOK_BATCH_COUNT)
            ).all()
            after = rows[-1].id if rows else after
            for r in rows:
                if box.is_current_text(r.secret):
                    continue
                try:
                    plain = r.secret if r.secret.startswith(PLAINTEXT_SECRET_PREFIX) else _opened(box, r.id, r.secret)
                except SecretBoxError:
                    continue
                done += conn.execute(
                    et.update().where(et.c.id == r.id, et.c.secret == r.secret).values(secret=_sealed(box, r.id, plain))
                ).rowcount
        if len(rows) < limits.WEBHOOK_BATCH_COUNT:
            return done


def backoff_ms(attempts: int, base_ms: int, rng: random.Random | None = None) -> int:
    """Delay before attempt `attempts + 1`: base * 2**(attempts-1), capped, plus up to 10% jitter."""
    assert attempts >= 1
    delay = min(base_ms * (1 << min(attempts - 1, 40)), limits.WEBHOOK_BACKOFF_MAX_MS)
    return delay + (rng or random).randrange(0, delay // 10 + 1)


def record_attempt(
    engine: sa.Engine,
    delivery_id: str,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    now_ms: int,
    base_ms: int,
    attempts_max: int,
) -> str:
    """Records one attempt's outcome; returns the delivery's new status."""
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(dt).where(dt.c.id == delivery_id)).one()
        attempts = row.attempts + 1
        if ok:
            status, next_at = "succeeded", row.next_attempt_at_ms
        elif attempts >= attempts_max:
            status, next_at = "failed", row.next_attempt_at_ms
        else:
            status, next_at = "pending", now_ms + backoff_ms(attempts, base_ms)
        conn.execute(
            dt.update()
            .where(dt.c.id == delivery_id, dt.c.status == "delivering")
            .values(
                status=status,
                attempts=attempts,
                next_attempt_at_ms=next_at,
                locked_until_ms=0,
                last_status_code=status_code,
                last_error=(error or None) and error[:512],
                updated_at_ms=now_ms,
            )
        )
    return status
