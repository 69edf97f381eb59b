"""API keys and the nonce replay store.

An API key is an id, the client it belongs to, a set of scopes and an Ed25519 public key that
its owner generated; the private key never reaches the node. Nonces are remembered per key in
the database (so every API replica sees them) until they can no longer be replayed.
"""

from __future__ import annotations

import dataclasses
import secrets

import sqlalchemy as sa

from node import limits
from node.store.api_models import api_keys, api_nonces, now_ms, replay_cursor, replay_tx, write_tx

SCOPES = ("read", "deposit", "withdraw", "approve", "admin")


class ApiKeyError(Exception):
    """An expected refusal, named as a sentence in `code`."""

    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: str
    client_id: str
    name: str
    scopes: frozenset[str]
    public_key: bytes
    created_at_ms: int
    revoked_at_ms: int | None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _row_to_key(row) -> ApiKey:
    return ApiKey(
        id=row.id,
        client_id=row.client_id,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        public_key=bytes(row.public_key),
        created_at_ms=row.created_at_ms,
        revoked_at_ms=row.revoked_at_ms,
    )


def create_api_key(
    engine: sa.Engine, *, client_id: str | None, name: str, scopes: list[str], public_key: bytes
) -> ApiKey:
    """Registers a key. Refusals in precedence order: public_key_must_be_32_bytes,
    unknown_scope, scopes_must_not_be_empty, name_too_long, too_many_api_keys."""
    if len(public_key) != 32:
        raise ApiKeyError("public_key_must_be_32_bytes", "an Ed25519 public key is 32 bytes", "public_key")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ApiKeyError("unknown_scope", f"unknown scopes {unknown}; known: {list(SCOPES)}", "scopes")
    if not scopes:
        raise ApiKeyError("scopes_must_not_be_empty", "a key needs at least one scope", "scopes")
    if not name or len(name) > limits.API_KEY_NAME_LEN_MAX:
        raise ApiKeyError("invalid_name", f"name must be 1-{limits.API_KEY_NAME_LEN_MAX} characters", "name")
    client_id = client_id or new_id("cli")
    key = ApiKey(
        id=new_id("key"),
        client_id=client_id,
        name=name,
        scopes=frozenset(scopes),
        public_key=bytes(public_key),
        created_at_ms=now_ms(),
        revoked_at_ms=None,
    )
    with write_tx(engine) as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.client_id == client_id)
        ).scalar_one()
        if count >= limits.API_KEYS_PER_CLIENT_MAX:
            raise ApiKeyError("too_many_api_keys", f"a client holds at most {limits.API_KEYS_PER_CLIENT_MAX} keys")
        conn.execute(
            api_keys.insert().values(
                id=key.id,
                client_id=key.client_id,
                name=key.name,
                scopes=" ".join(sorted(key.scopes)),
                public_key=key.public_key,
                created_at_ms=key.created_at_ms,
                revoked_at_ms=None,
            )
        )
    return key


def get_api_key(engine: sa.Engine, key_id: str) -> ApiKey | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
    return _row_to_key(row) if row else None


def list_api_keys(engine: sa.Engine, client_id: str, *, after_seq: int, limit: int) -> list[tuple[int, ApiKey]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(api_keys)
            .where(api_keys.c.client_id == client_id, api_keys.c.seq > after_seq)
            .order_by(api_keys.c.seq)
            .limit(limit)
        ).all()
    return [(r.seq, _row_to_key(r)) for r in rows]


def revoke_api_key(engine: sa.Engine, client_id: str, key_id: str) -> ApiKey:
    """Refusals: api_key_not_found. Revoking twice is a no-op returning the revoked key."""
    with write_tx(engine) as conn:
        row = conn.execute(
            sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.client_id == client_id)
        ).first()
        if row is None:
            raise ApiKeyError("api_key_not_found", f"no API key {key_id}")
        if row.revoked_at_ms is None:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at_ms=now_ms()))
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
    return _row_to_key(row)


def remember_nonce(engine: sa.Engine, key_id: str, nonce: str, at_ms: int) -> bool:
    """Records the nonce; False when this key already used it within the replay window.
    `engine`: the replay engine (node.store.api_models.make_replay_engine).

    The primary key (key_id, nonce) makes this atomic across replicas on both databases."""
    expires_at_ms = at_ms + limits.API_NONCE_TTL_MS
    try:
        with replay_tx(engine) as conn:
            conn.execute(api_nonces.insert().values(key_id=key_id, nonce=nonce, expires_at_ms=expires_at_ms))
        return True
    except sa.exc.IntegrityError:
        pass
    # Seen before. Accept only if that sighting expired and is not yet purged: the conditional
    # update is atomic, so of two racing requests at most one takes the expired row over.
    with replay_tx(engine) as conn:
        taken = conn.execute(
            api_nonces.update()
            .where(api_nonces.c.key_id == key_id, api_nonces.c.nonce == nonce, api_nonces.c.expires_at_ms < at_ms)
            .values(expires_at_ms=expires_at_ms)
        ).rowcount
    return taken == 1


def remember_nonces(engine: sa.Engine, sightings: list[tuple[str, str, int]]) -> list[bool]:
    """Records a batch of (key_id, nonce, at_ms) in ONE transaction (group commit); returns,
    per sighting in order, what `remember_nonce` would have returned for it alone, in that order:
    the first sighting of a pair in the batch may be new, every later one in the same batch is
    a replay. `engine`: the replay engine.

    One multi-row `INSERT .. ON CONFLICT DO NOTHING RETURNING` takes every new pair at once; a
    pair already present is accepted only by the atomic take-over of an expired row, as in
    `remember_nonce`. Nothing is answered before the commit. The statement is written out in
    the driver's parameter style (this runs for every request: building and compiling the
    SQLAlchemy construct each time cost five times the database work)."""
    assert len(sightings) <= limits.API_NONCE_BATCH_MAX
    first: dict[tuple[str, str], int] = {}
    for i, (key_id, nonce, _at) in enumerate(sightings):
        first.setdefault((key_id, nonce), i)
    fresh = [False] * len(sightings)
    if not first:
        return fresh
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    assert engine.dialect.paramstyle in ("qmark", "format", "pyformat"), engine.dialect.paramstyle
    params: list = []
    for (key_id, nonce), i in first.items():
        params += (key_id, nonce, sightings[i][2] + limits.API_NONCE_TTL_MS)
    row = f"({mark}, {mark}, {mark})"
    insert = (
        "INSERT INTO api_nonces (key_id, nonce, expires_at_ms) VALUES "
        + ", ".join([row] * len(first))
        + " ON CONFLICT (key_id, nonce) DO NOTHING RETURNING key_id, nonce"
    )
    update = (
        f"UPDATE api_nonces SET expires_at_ms = {mark} WHERE key_id = {mark} AND nonce = {mark} AND expires_at_ms < {mark}"
    )
    with replay_cursor(engine) as cur:
        cur.execute(insert, tuple(params))
        inserted = {(r[0], r[1]) for r in cur.fetchall()}
        for pair, i in first.items():
            if pair in inserted:
                fresh[i] = True
                continue
            at_ms = sightings[i][2]
            cur.execute(update, (at_ms + limits.API_NONCE_TTL_MS, pair[0], pair[1], at_ms))
            fresh[i] = cur.rowcount == 1
    return fresh


def purge_nonces(engine: sa.Engine, at_ms: int) -> int:
    """Deletes at most API_NONCE_PURGE_BATCH_COUNT expired nonces; returns how many."""
    with replay_tx(engine) as conn:
        expired = (
            sa.select(api_nonces.c.key_id, api_nonces.c.nonce)
            .where(api_nonces.c.expires_at_ms < at_ms)
            .limit(limits.API_NONCE_PURGE_BATCH_COUNT)
        )
        rows = conn.execute(expired).all()
        if not rows:
            return 0
        conn.execute(
            api_nonces.delete().where(
                sa.tuple_(api_nonces.c.key_id, api_nonces.c.nonce).in_([(r.key_id, r.nonce) for r in rows])
            )
        )
    return len(rows)
