"""`SignedRoute`: every /v1 route that needs a key is one of these.

Before any of the route's own code with effects runs, the wrapper reads the raw body
(bounded), authenticates the signed request (steps 1-4 on the event loop), records its nonce
(step 5), takes a rate-limit token, checks the route's scope, and for a POST with an
Idempotency-Key either replays the stored response or claims the key. Refusals are problem
documents; nothing was executed.

One hop per request: a GET to a plain `def` endpoint whose dependencies are inert (`ctx_of`)
is admitted — nonce, rate limit, scope — in the endpoint's own worker-thread hop, just before
the endpoint (FastAPI has validated its path and query parameters by then, which touches
nothing; if they are refused the request is still admitted first, so a replay is 401 as
ever). Every other request is admitted here, before its dependencies and body parsing.

A route declares its scope with `openapi_extra=scope("read")` (shown in the OpenAPI document
as `x-scope`); `scope(None)` admits any valid key.
"""

from __future__ import annotations

import contextvars
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
    box: Any = None  # node.secretbox.SecretBox: webhook secrets and stored responses at rest
    store: Any = None  # node.store.Store
    keys: Any = None  # api.auth.KeyCache
    replay_engine: Any = None  # node.store.api_models.make_replay_engine
    nonces: Any = None  # api.nonces.NonceWriter (on replay_engine)
    ops: Any = None  # node.clients.ClientOps
    worker: Any = None
    withdrawals: Any = None  # node.client_withdrawals.ClientWithdrawals
    deposits: Any = None  # node.deposits.Deposits, when the node has chains


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


@dataclasses.dataclass
class _Admission:
    """What a request still has to pass after its signature verified: the nonce (step 5),
    the rate limit and the scope, in that order, before any route code with side effects."""

    ctx: AppContext
    principal: auth.Principal
    sighting: auth.Sighting
    required: str
    rate_headers: dict | None = None
    attempted: bool = False
    done: bool = False

    def admit(self) -> None:
        """Blocking (a worker thread): raises the refusal as a Problem."""
        assert not self.attempted, "a request is admitted once"
        self.attempted = True
        ctx = self.ctx
        try:
            auth.check_nonce(ctx.nonces, self.sighting)
        except Problem as p:
            ctx.metrics.auth_refused(p.code)
            raise
        self.rate_headers = ctx.rate_limiter.take(self.principal.key_id)
        if self.required != ANY_SCOPE:
            try:
                auth.require_scope(self.principal, self.required)
            except Problem as p:
                ctx.metrics.auth_refused(p.code)
                raise
        self.done = True


# Dependencies that only read the request or the app (no I/O, no state): a GET using only
# these can be admitted in its endpoint's hop.
_INERT_DEPENDENCIES = {ctx_of}

# Set by SignedRoute's handler for a GET whose admission rides on the endpoint's worker hop.
_DEFERRED: contextvars.ContextVar[_Admission | None] = contextvars.ContextVar("custody_deferred_admission", default=None)


def _run_admitted(admission: _Admission | None, endpoint, args, kwargs):
    if admission is not None:
        admission.admit()
    return endpoint(*args, **kwargs)


def _in_one_hop(endpoint):
    """A plain `def` endpoint, as a coroutine that runs it in ONE worker-thread hop.

    FastAPI runs a plain `def` endpoint in a worker thread and validates its response in a
    second hop; each hop is two thread wake-ups, which on a busy machine cost more than a
    signed read's database work. As a coroutine it is validated on the event loop. For a GET,
    the request's admission (nonce, rate limit, scope — see SignedRoute) runs in this same hop,
    just before the endpoint: the nonce is still recorded and checked before any route code
    with side effects, with no extra thread switch. The endpoint still runs off the event loop,
    so its blocking database work never stalls other requests. FastAPI reads the parameters
    through `__wrapped__` (inspect.signature), so the OpenAPI document is unchanged."""
    if inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    async def hop(*args, **kwargs):
        return await run_in_threadpool(_run_admitted, _DEFERRED.get(), endpoint, args, kwargs)

    hop.custody_one_hop = True
    return hop


class SignedRoute(APIRoute):
    def __init__(self, path: str, endpoint, **kwargs):
        super().__init__(path, _in_one_hop(endpoint), **kwargs)

    def get_route_handler(self):
        inner = super().get_route_handler()
        required = (self.openapi_extra or {}).get(SCOPE_KEY)
        assert required is not None, f"route {self.path} must declare its scope with openapi_extra=scope(...)"
        # A GET to a plain `def` endpoint has no body and no Idempotency-Key: its admission can
        # ride on the endpoint's worker hop. Anything else is admitted here, before route code.
        # Only when its dependencies are known to be inert (run before the admission, they must
        # not touch state): any other dependency and the route is admitted here, the safe way.
        can_defer = getattr(self.endpoint, "custody_one_hop", False) and all(
            d.call in _INERT_DEPENDENCIES for d in self.dependant.dependencies
        )

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
                principal, sighting = await auth.authenticate(ctx.keys, request.method, pq, request.headers, body)
            except Problem as p:
                ctx.metrics.auth_refused(p.code)
                raise
            request.state.principal = principal
            admission = _Admission(ctx, principal, sighting, required)

            if can_defer and request.method == "GET":
                token = _DEFERRED.set(admission)
                try:
                    response = await run_inner(request)
                finally:
                    _DEFERRED.reset(token)
                if admission.attempted and not admission.done:
                    return response  # refused in the hop: the problem document, as it was
                if not admission.attempted:
                    # The endpoint never ran (its parameters were refused, 422): admit anyway,
                    # so the answer is what it always was — a replay is 401, not a 422.
                    try:
                        await run_in_threadpool(admission.admit)
                    except Problem as p:
                        return p.response()
                response.headers.update(admission.rate_headers)
                return response

            await run_in_threadpool(admission.admit)
            rate_headers = admission.rate_headers

            idem_key = request.headers.get("idempotency-key") if request.method == "POST" else None
            if idem_key is None:
                response = await run_inner(request)
            else:
                idempotency.validate_key(idem_key)
                fp = idempotency.fingerprint(request.method, pq, body)
                stored = await run_in_threadpool(idempotency.begin, ctx.engine, principal.client_id, idem_key, fp, box=ctx.box)
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
                        await run_in_threadpool(idempotency.finish, ctx.engine, principal.client_id, idem_key, stored, box=ctx.box)
            response.headers.update(rate_headers)
            return response

        return handler
