"""Idempotency-Key on POST (design/api-conventions.md, "Idempotency").

The first request with a key inserts an `in_progress` record (the primary key makes this
atomic across replicas and on both databases), runs, and stores its response (any status
below 500) for API_IDEMPOTENCY_TTL_S. Then:
  same key, same method + path + body   -> the stored response, replayed (Idempotent-Replayed: true)
  same key, anything different          -> 409 idempotency_key_reused
  same key while the first still runs   -> 409 idempotency_request_in_progress (Retry-After: 1)
A 5xx or a crash releases the key: a crashed request's record is taken over once its lease
(API_IDEMPOTENCY_LEASE_S) runs out. Domain writes carry their own guard (client-chosen ids and
`external_id`), so a crash between the write and storing the response cannot double-execute.
Records are scoped to the API client (all its keys), like external_id.
"""

from __future__ import annotations

import dataclasses
import hashlib

import sqlalchemy as sa

from api.errors import Problem
from node import limits
from node.store.api_models import idempotency_records as t
from node.store.api_models import now_ms as _now_ms
from node.store.api_models import write_tx


@dataclasses.dataclass(frozen=True)
class Stored:
    status: int
    content_type: str
    body: bytes


def fingerprint(method: str, path_and_query: str, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.upper().encode(), path_and_query.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def validate_key(key: str) -> None:
    if not (1 <= len(key) <= limits.API_IDEMPOTENCY_KEY_LEN_MAX) or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{limits.API_IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters",
            field="Idempotency-Key",
        )


def begin(engine: sa.Engine, client_id: str, key: str, fp: str, now_ms: int | None = None) -> Stored | None:
    """None: the caller owns the key and must `finish` or `release` it. A Stored: replay it."""
    now_ms = _now_ms() if now_ms is None else now_ms
    lease_until = now_ms + limits.API_IDEMPOTENCY_LEASE_S * 1000
    values = dict(
        client_id=client_id,
        idempotency_key=key,
        fingerprint=fp,
        state="in_progress",
        created_at_ms=now_ms,
        locked_until_ms=lease_until,
        expires_at_ms=now_ms + limits.API_IDEMPOTENCY_TTL_S * 1000,
    )
    where = (t.c.client_id == client_id, t.c.idempotency_key == key)
    try:
        with write_tx(engine) as conn:
            conn.execute(t.insert().values(**values))
        return None
    except sa.exc.IntegrityError:
        pass
    with write_tx(engine) as conn:
        row = conn.execute(sa.select(t).where(*where)).first()
        if row is None:  # purged in between: take it
            conn.execute(t.insert().values(**values))
            return None
        if row.expires_at_ms < now_ms:
            # Expired but not yet purged: start afresh (conditional on what we read).
            taken = conn.execute(
                t.update().where(*where, t.c.expires_at_ms == row.expires_at_ms).values(
                    **{k: v for k, v in values.items() if k not in ("client_id", "idempotency_key")},
                    response_status=None,
                    response_content_type=None,
                    response_body=None,
                )
            ).rowcount
            if taken == 1:
                return None
            raise _in_progress()
        if row.fingerprint != fp:
            raise Problem(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request (method, path or body)",
                field="Idempotency-Key",
            )
        if row.state == "done":
            return Stored(row.response_status, row.response_content_type, bytes(row.response_body))
        if row.locked_until_ms >= now_ms:
            raise _in_progress()
        # The first request's process died mid-way: take over its lease, atomically.
        taken = conn.execute(
            t.update()
            .where(*where, t.c.state == "in_progress", t.c.locked_until_ms == row.locked_until_ms)
            .values(locked_until_ms=lease_until)
        ).rowcount
        if taken != 1:
            raise _in_progress()
        return None


def _in_progress() -> Problem:
    return Problem(
        409,
        "idempotency_request_in_progress",
        "a request with this Idempotency-Key is still being processed; retry shortly",
        field="Idempotency-Key",
        headers={"Retry-After": "1"},
    )


def finish(engine: sa.Engine, client_id: str, key: str, stored: Stored) -> None:
    assert stored.status < 500, "5xx responses release the key instead"
    body = stored.body[: limits.API_IDEMPOTENCY_RESPONSE_BYTES_MAX]
    assert len(body) == len(stored.body), "response larger than API_IDEMPOTENCY_RESPONSE_BYTES_MAX"
    with write_tx(engine) as conn:
        conn.execute(
            t.update()
            .where(t.c.client_id == client_id, t.c.idempotency_key == key, t.c.state == "in_progress")
            .values(
                state="done",
                response_status=stored.status,
                response_content_type=stored.content_type,
                response_body=body,
            )
        )


def release(engine: sa.Engine, client_id: str, key: str) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            t.delete().where(t.c.client_id == client_id, t.c.idempotency_key == key, t.c.state == "in_progress")
        )


def purge(engine: sa.Engine, now_ms: int | None = None) -> int:
    now_ms = _now_ms() if now_ms is None else now_ms
    with write_tx(engine) as conn:
        rows = conn.execute(
            sa.select(t.c.client_id, t.c.idempotency_key)
            .where(t.c.expires_at_ms < now_ms)
            .limit(limits.API_IDEMPOTENCY_PURGE_BATCH_COUNT)
        ).all()
        for r in rows:
            conn.execute(
                t.delete().where(
                    t.c.client_id == r.client_id, t.c.idempotency_key == r.idempotency_key, t.c.expires_at_ms < now_ms
                )
            )
    return len(rows)
