"""Signed-request authentication (design/api-conventions.md, "Authentication").

`authenticate` runs before any route code (see api/routing.py): it checks, in this order,
  1. the four headers are present and well-formed           401 missing_authentication / malformed_*
  2. the key exists and is not revoked                       401 unknown_api_key
  3. X-Timestamp is within ±30 s of our clock                401 timestamp_outside_window
  4. the Ed25519 signature over the exact string-to-sign     401 invalid_signature
  5. the nonce is new for this key (recorded in the database) 401 nonce_reused
     (group-committed with other requests' nonces by api/nonces.py, answered after the commit)
Steps 1-4 are `authenticate` (event loop), step 5 is `check_nonce` (worker thread).
and `require_scope` then refuses a key without the route's scope with 403 missing_scope.
The nonce is recorded only after the signature verifies, so nobody but the key's owner can
burn its nonces. Unknown key and revoked key give the same answer.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from api.errors import Problem
from api.nonces import NonceWriter
from api.signing import b64url_decode, verify_request
from node import apikeys, limits

_NONCE_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Custody-Ed25519 realm="custody"'}


@dataclasses.dataclass(frozen=True)
class Principal:
    key_id: str
    client_id: str
    scopes: frozenset[str]


class KeyCache:
    """API key lookups, cached for API_KEY_CACHE_TTL_MS per replica (bounded; revoking through
    this replica drops the entry at once, other replicas see it within the TTL)."""

    def __init__(self, engine: sa.Engine, ttl_ms: int = limits.API_KEY_CACHE_TTL_MS):
        self.engine = engine
        self.ttl_ms = ttl_ms
        self._entries: dict[str, tuple[int, apikeys.ApiKey | None]] = {}
        self._lock = threading.Lock()

    def peek(self, key_id: str, now_ms: int) -> tuple[bool, apikeys.ApiKey | None]:
        """(True, key or None) from the cache when fresh; (False, None) when it must be read."""
        hit = self._entries.get(key_id)  # one dict read: atomic under the GIL
        if hit is not None and now_ms - hit[0] < self.ttl_ms:
            return True, hit[1]
        return False, None

    def get(self, key_id: str, now_ms: int) -> apikeys.ApiKey | None:
        hit, key = self.peek(key_id, now_ms)
        if hit:
            return key
        key = apikeys.get_api_key(self.engine, key_id)
        with self._lock:
            if len(self._entries) >= limits.API_KEY_CACHE_ENTRIES_MAX:
                self._entries.clear()
            self._entries[key_id] = (now_ms, key)
        return key

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)


def _refuse(code: str, detail: str, field: str | None = None) -> Problem:
    return Problem(401, code, detail, field=field, headers=WWW_AUTHENTICATE)


def _parse_headers(headers) -> tuple[str, str, str, bytes]:
    """Step 1: the four headers, present and well-formed."""
    key_id = headers.get("x-api-key")
    timestamp = headers.get("x-timestamp")
    nonce = headers.get("x-nonce")
    signature = headers.get("x-signature")
    missing = [h for h, v in (("X-Api-Key", key_id), ("X-Timestamp", timestamp), ("X-Nonce", nonce), ("X-Signature", signature)) if not v]
    if missing:
        raise _refuse("missing_authentication", f"signed request headers missing: {', '.join(missing)}", missing[0])
    if len(key_id) > limits.API_HEADER_KEY_ID_LEN_MAX or not _KEY_ID_RE.match(key_id):
        raise _refuse("unknown_api_key", "unknown or revoked API key", "X-Api-Key")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise _refuse("malformed_timestamp", "X-Timestamp must be unix time in milliseconds", "X-Timestamp")
    if not (limits.API_NONCE_LEN_MIN <= len(nonce) <= limits.API_NONCE_LEN_MAX) or not _NONCE_RE.match(nonce):
        raise _refuse(
            "malformed_nonce",
            f"X-Nonce must be {limits.API_NONCE_LEN_MIN}-{limits.API_NONCE_LEN_MAX} characters of [A-Za-z0-9._~-]",
            "X-Nonce",
        )
    try:
        if len(signature) > limits.API_SIGNATURE_HEADER_LEN_MAX:
            raise ValueError("too long")
        sig = b64url_decode(signature)
    except ValueError:
        raise _refuse("malformed_signature", "X-Signature must be unpadded base64url", "X-Signature") from None
    return key_id, timestamp, nonce, sig


def _check_signed(
    key: apikeys.ApiKey | None, timestamp: str, sig: bytes, method: str, path_and_query: str, nonce: str, body: bytes, now_ms: int
) -> apikeys.ApiKey:
    """Steps 2-4: the key is live, the timestamp inside the window, the signature valid."""
    if key is None or key.revoked_at_ms is not None:
        raise _refuse("unknown_api_key", "unknown or revoked API key", "X-Api-Key")
    if abs(now_ms - int(timestamp)) > limits.API_CLOCK_SKEW_MS:
        raise _refuse(
            "timestamp_outside_window",
            f"X-Timestamp is more than {limits.API_CLOCK_SKEW_MS // 1000} s from the server clock ({now_ms})",
            "X-Timestamp",
        )
    if len(sig) != 64 or not verify_request(key.public_key, sig, method, path_and_query, timestamp, nonce, body):
        raise _refuse("invalid_signature", "the signature does not match the request", "X-Signature")
    return key


@dataclasses.dataclass(frozen=True)
class Sighting:
    """A verified request's nonce, to be recorded (step 5) before the request runs."""
    key_id: str
    nonce: str
    at_ms: int


async def authenticate(
    keys: KeyCache,
    method: str,
    path_and_query: str,
    headers,
    body: bytes,
    now_ms: int | None = None,
) -> tuple[Principal, Sighting]:
    """Steps 1-4, on the event loop: parsing and the Ed25519 check are CPU work either way,
    and a hop to a worker thread costs more than they do. Only a key-cache miss reads the
    database (in a worker thread). Step 5 is `check_nonce`, which the caller runs before any
    route code with side effects (api/routing.py)."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    key_id, timestamp, nonce, sig = _parse_headers(headers)
    hit, key = keys.peek(key_id, now_ms)
    if not hit:
        key = await run_in_threadpool(keys.get, key_id, now_ms)
    key = _check_signed(key, timestamp, sig, method, path_and_query, nonce, body, now_ms)
    return Principal(key_id=key.id, client_id=key.client_id, scopes=key.scopes), Sighting(key.id, nonce, now_ms)


def check_nonce(nonces: NonceWriter, sighting: Sighting) -> None:
    """Step 5, blocking (a worker thread): records the nonce, refuses a replay."""
    if not nonces.remember_blocking(sighting.key_id, sighting.nonce, sighting.at_ms):
        raise _refuse("nonce_reused", "this nonce was already used by this key", "X-Nonce")


def require_scope(principal: Principal, scope: str) -> None:
    assert scope in apikeys.SCOPES, f"route declares unknown scope {scope!r}"
    if scope not in principal.scopes:
        raise Problem(403, "missing_scope", f"this API key lacks the `{scope}` scope", field="X-Api-Key")
