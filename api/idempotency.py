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

Stored response bodies are sealed (node/secretbox.py, purpose "idempotent-response", bound to
the client, the key, the status and the content type): a replayed webhook `register` or
`rotate-secret` response carries the endpoint's secret, and nothing else the node stores
holds it in the clear.
"""

from __future__ import annotations

import dataclasses
import hashlib

import sqlalchemy as sa

import node.log
from api.errors import Problem
from node import limits
from node.secretbox import MAGIC as SEALED_MAGIC
from node.secretbox import SecretBox, SecretBoxError
from node.store.api_models import idempotency_records as t
from node.store.api_models import now_ms as _now_ms
from node.store.api_models import write_tx


PURPOSE = "idempotent-response"

log = node.log.get("api.idempotency")


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


def _context(client_id: str, key: str, status: int, content_type: str) -> str:
    return "\x00".join((client_id, key, str(status), content_type))  # the key is printable ASCII: no NUL


def _seal(box: SecretBox, client_id: str, key: str, stored: Stored) -> bytes:
    return box.seal(stored.body, purpose=PURPOSE, context=_context(client_id, key, stored.status, stored.content_type))


def _opened_body(box: SecretBox, row) -> bytes:
    """The stored body; raises SecretBoxError."""
    return box.open(bytes(row.response_body), purpose=PURPOSE,
                    context=_context(row.client_id, row.idempotency_key, row.response_status, row.response_content_type))


def _open(box: SecretBox, row) -> Stored:
    try:
        body = _opened_body(box, row)
    except SecretBoxError as exc:
        # Not the client's doing, and the first request may have executed: never run it again.
        log.error("stored_response_unreadable", client=row.client_id, reason=str(exc))
        raise Problem(500, "stored_response_unreadable",
                      "the stored response for this Idempotency-Key does not open; the request is not run again",
                      field="Idempotency-Key") from None
    return Stored(row.response_status, row.response_content_type, body)


def begin(engine: sa.Engine, client_id: str, key: str, fp: str, now_ms: int | None = None, *,
          box: SecretBox) -> Stored | None:
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
            return _open(box, row)
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


def finish(engine: sa.Engine, client_id: str, key: str, stored: Stored, *, box: SecretBox) -> None:
    assert stored.status < 500, "5xx responses release the key instead"
    assert len(stored.body) <= limits.API_IDEMPOTENCY_RESPONSE_BYTES_MAX, "response larger than API_IDEMPOTENCY_RESPONSE_BYTES_MAX"
    with write_tx(engine) as conn:
        conn.execute(
            t.update()
            .where(t.c.client_id == client_id, t.c.idempotency_key == key, t.c.state == "in_progress")
            .values(
                state="done",
                response_status=stored.status,
                response_content_type=stored.content_type,
                response_body=_seal(box, client_id, key, stored),
            )
        )


def reseal_responses(engine: sa.Engine, box: SecretBox) -> int:
    """Brings every stored response body under the box's current key: bodies stored before
    bodies were sealed (until they expire a replay still needs them) are sealed, bodies under a
    previous key (after a rotation) are resealed; one that opens under none of the keys is left
    (its replay is refused). Keys are read a batch at a time and bodies one at a time (a body
    can be 1 MiB); each update is conditional on the body read. Returns how many were
    (re)sealed."""
    done, after = 0, ("", "")
    current = SEALED_MAGIC + box.key_id
    stale = sa.func.substr(t.c.response_body, 1, len(current)) != current
    while True:
        with engine.connect() as conn:
            keys = conn.execute(
                sa.select(t.c.client_id, t.c.idempotency_key)
                .where(t.c.state == "done", t.c.response_body.is_not(None), stale,
                       sa.tuple_(t.c.client_id, t.c.idempotency_key) > after)
                .order_by(t.c.client_id, t.c.idempotency_key)
                .limit(limits.API_IDEMPOTENCY_PURGE_BATCH_COUNT)
            ).all()
        if keys:
            after = tuple(keys[-1])
        for k in keys:
            where = (t.c.client_id == k.client_id, t.c.idempotency_key == k.idempotency_key, t.c.state == "done")
            with write_tx(engine) as conn:
                r = conn.execute(sa.select(t).where(*where)).first()
                if r is None or r.response_body is None or box.is_current(bytes(r.response_body)):
                    continue
                body = bytes(r.response_body)
                if body.startswith(SEALED_MAGIC):
                    try:
                        body = _opened_body(box, r)
                    except SecretBoxError:  # under no key of this box: its replay is refused
                        continue
                stored = Stored(r.response_status, r.response_content_type, body)
                done += conn.execute(
                    t.update().where(*where, t.c.response_body == r.response_body)
                    .values(response_body=_seal(box, r.client_id, r.idempotency_key, stored))
                ).rowcount
        if len(keys) < limits.API_IDEMPOTENCY_PURGE_BATCH_COUNT:
            return done


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
