"""`SignedRoute`: every /v1 route that needs a key is one of these.

Before any of the route's own code runs (dependencies, body parsing, the endpoint), the
wrapper reads the raw body (bounded), authenticates the signed request, takes a rate-limit
token, checks the route's scope, and for a POST with an Idempotency-Key either replays the
stored response or claims the key. Refusals are problem documents; nothing was executed.

A route declares its scope with `openapi_extra=scope("read")` (shown in the OpenAPI document
as `x-scope`); `scope(None)` admits any valid key.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import auth, idempotency
from api.errors import Problem, to_problem
from api.ratelimit import RateLimiter
from api.settings import ApiSettings
from node import limits

SCOPE_KEY = "x-scope"
ANY_SCOPE = "any"


@dataclasses.dataclass
class AppContext:
    settings: ApiSettings
    engine: sa.Engine
    rate_limiter: RateLimiter
    metrics: Any
    store: Any = None  # node.store.Store
    keys: Any = None  # api.auth.KeyCache
    replay_engine: Any = None  # node.store.api_models.make_replay_engine
    nonces: Any = None  # api.nonces.NonceWriter (on replay_engine)
    ops: Any = None  # node.clients.ClientOps
    worker: Any = None


def scope(name: str | None) -> dict:
    return {SCOPE_KEY: name or ANY_SCOPE, "security": [{"CustodySignature": []}]}


async def ctx_of(request: Request) -> AppContext:
    """The dependency `ctx: AppContext = Depends(ctx_of)`. Async on purpose: FastAPI runs a
    plain `def` dependency in a worker thread, a hop that cost more than a signed read's
    database work. Outside a dependency, read `request.app.state.ctx`."""
    return request.app.state.ctx


def principal_of(request: Request) -> auth.Principal:
    return request.state.principal


def path_and_query(request: Request) -> str:
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    qs = request.scope.get("query_string") or b""
    out = raw_path.decode("latin-1")
    return out + "?" + qs.decode("latin-1") if qs else out


async def read_body_bounded(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.API_BODY_BYTES_MAX:
        raise Problem(413, "body_too_large", f"request bodies are limited to {limits.API_BODY_BYTES_MAX} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.API_BODY_BYTES_MAX:
            raise Problem(413, "body_too_large", f"request bodies are limited to {limits.API_BODY_BYTES_MAX} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's cache: the route's own parsing reads these same bytes
    return body


def _in_one_hop(endpoint):
    """A plain `def` endpoint, as a coroutine that runs it in a worker thread. FastAPI awaits
    an async endpoint and validates its response on the event loop; for a plain `def` it takes
    one worker-thread hop to run it and a second to validate the response, and each hop is a
    thread wake-up that costs more than the validation itself. The endpoint still runs off the
    event loop, so its blocking database work never stalls other requests. FastAPI reads the
    parameters through `__wrapped__` (inspect.signature), so the OpenAPI document is unchanged."""
    if inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    async def hop(*args, **kwargs):
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return hop


class SignedRoute(APIRoute):
    def __init__(self, path: str, endpoint, **kwargs):
        super().__init__(path, _in_one_hop(endpoint), **kwargs)

    def get_route_handler(self):
        inner = super().get_route_handler()
        required = (self.openapi_extra or {}).get(SCOPE_KEY)
        assert required is not None, f"route {self.path} must declare its scope with openapi_extra=scope(...)"

        async def run_inner(request: Request) -> Response:
            try:
                return await inner(request)
            except Exception as exc:
                problem = to_problem(exc)
                if problem is None:
                    raise
                return problem.response()

        async def handler(request: Request) -> Response:
            ctx: AppContext = request.app.state.ctx
            try:
                body = await read_body_bounded(request)
                pq = path_and_query(request)
                principal = await auth.authenticate(ctx.keys, ctx.nonces, request.method, pq, request.headers, body)
            except Problem as p:
                ctx.metrics.auth_refused(p.code)
                raise
            rate_headers = ctx.rate_limiter.take(principal.key_id)
            if required != ANY_SCOPE:
                try:
                    auth.require_scope(principal, required)
                except Problem as p:
                    ctx.metrics.auth_refused(p.code)
                    raise
            request.state.principal = principal

            idem_key = request.headers.get("idempotency-key") if request.method == "POST" else None
            if idem_key is None:
                response = await run_inner(request)
            else:
                idempotency.validate_key(idem_key)
                fp = idempotency.fingerprint(request.method, pq, body)
                stored = await run_in_threadpool(idempotency.begin, ctx.engine, principal.client_id, idem_key, fp)
                if stored is not None:
                    response = Response(
                        content=stored.body,
                        status_code=stored.status,
                        media_type=stored.content_type,
                        headers={"Idempotent-Replayed": "true"},
                    )
                else:
                    try:
                        response = await run_inner(request)
                    except BaseException:
                        await run_in_threadpool(idempotency.release, ctx.engine, principal.client_id, idem_key)
                        raise
                    if response.status_code >= 500:
                        await run_in_threadpool(idempotency.release, ctx.engine, principal.client_id, idem_key)
                    else:
                        stored = idempotency.Stored(
                            response.status_code,
                            response.headers.get("content-type", "application/json"),
                            bytes(response.body),
                        )
                        await run_in_threadpool(idempotency.finish, ctx.engine, principal.client_id, idem_key, stored)
            response.headers.update(rate_headers)
            return response

        return handler
