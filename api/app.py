"""The composition root of the API process: `create_app(settings)`.

    uvicorn --factory api.app:app_from_env      (settings from CUSTODY_API_* variables)

Unauthenticated on purpose, and nothing else: GET /v1/health (liveness), GET /v1/ready
(database reachable), GET /openapi.json; /metrics takes the operator's bearer token and is
off when no token is configured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import threading

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.responses import Response

import node.log
from api import errors, idempotency, schemas
from api.auth import KeyCache
from api.errors import Problem
from api.metrics import Metrics, MetricsMiddleware
from api.nonces import NonceWriter
from api.ratelimit import RateLimiter
from api.routes import apikeys as apikeys_routes
from api.routes import deposits as deposits_routes
from api.routes import ledger as ledger_routes
from api.routes import reserves as reserves_routes
from api.routes import webhooks as webhooks_routes
from api.routes import withdrawals as withdrawals_routes
from api.routing import AppContext
from api.settings import ApiSettings
from api.webhook_worker import WebhookWorker
from node import apikeys, client_withdrawals, clients, limits, webhooks
from node.clients import ClientOps
from node.store import Store, open_store
from node.store.api_models import make_replay_engine, now_ms

log = node.log.get("api")

ROUTERS = [withdrawals_routes.router, deposits_routes.router]


@dataclasses.dataclass
class Services:
    """The domain services the routes call that a node process shares with its workers."""

    withdrawals: client_withdrawals.ClientWithdrawals
    deposits: object  # node.deposits.Deposits
    routers: tuple = ()

    @classmethod
    def api_only(cls, store: Store) -> "Services":
        from node.deposits import Deposits
        from node.withdrawals import Withdrawals

        ledger = client_withdrawals.evented_ledger(store)
        # No chains: withdrawals and deposit addresses are refused (chain_not_configured); reads work.
        return cls(client_withdrawals.ClientWithdrawals(Withdrawals(ledger, {})), Deposits(ledger, {}, vault_id="unconfigured"))

errors.register_domain_error(apikeys.ApiKeyError)
errors.register_domain_error(webhooks.WebhookError)
errors.register_domain_error(clients.ClientOpError)
errors.register_domain_error(client_withdrawals.ClientWithdrawalError)

DESCRIPTION = """Custody API. Every /v1 route except health and readiness takes a signed
request (X-Api-Key, X-Timestamp, X-Nonce, X-Signature: Ed25519 over METHOD, path?query,
timestamp, nonce and the body's SHA-256, joined by newlines). POSTs accept Idempotency-Key.
Errors are RFC 9457 problem documents with a stable `code`. Amounts are decimal strings in
base units."""


def create_app(settings: ApiSettings, store: Store | None = None, services: Services | None = None) -> FastAPI:
    """`store`: an open, migrated store (tests pass their own); default: open and migrate
    settings.database_url. `services`: what the node process shares with its workers
    (api/node_root.py); default: the API alone, with no chains configured (withdrawals are
    then refused with `chain_not_configured`)."""
    store = store or open_store(settings.database_url, schema=settings.database_schema)
    services = services or Services.api_only(store)
    engine = store.engine
    metrics = Metrics()
    replay_engine = make_replay_engine(store)
    box = settings.secret_box()
    # Values in the clear (stored before sealing) or under a previous key (rotation): resealed.
    resealed = webhooks.reseal_secrets(engine, box), idempotency.reseal_responses(engine, box)
    if any(resealed):
        log.info("secrets_resealed", key_id=box.key_id.hex(), webhook_secrets=resealed[0], idempotent_responses=resealed[1])
    ctx = AppContext(
        settings=settings,
        engine=engine,
        box=box,
        store=store,
        ops=ClientOps(store),
        keys=KeyCache(engine),
        replay_engine=replay_engine,
        nonces=NonceWriter(replay_engine),
        rate_limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        metrics=metrics,
        withdrawals=services.withdrawals,
        deposits=services.deposits,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if settings.webhook_worker:
            ctx.worker = WebhookWorker(
                engine,
                box=box,
                backoff_base_ms=settings.webhook_backoff_base_ms,
                attempts_max=settings.webhook_attempts_max,
                on_attempt=metrics.webhook_attempt,
            )
            ctx.worker.start()
        stop_housekeeping = threading.Event()
        housekeeper = threading.Thread(
            target=_housekeeping, args=(ctx, stop_housekeeping), name="api-housekeeping", daemon=True
        )
        housekeeper.start()
        log.info("api_started", environment=settings.environment, webhook_worker=settings.webhook_worker)
        try:
            yield
        finally:
            stop_housekeeping.set()
            housekeeper.join(timeout=10)
            if ctx.worker is not None:
                ctx.worker.stop()
            if ctx.replay_engine is not engine:
                ctx.replay_engine.dispose()

    app = FastAPI(
        title="custody-node API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    # The node's resources (withdrawals, approvals, whitelist; deposits when the node has them)
    # and any router a composition root adds (services.routers).
    for router in ROUTERS + list(services.routers):
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/v1/health", response_model=schemas.HealthPublic, tags=["system"])
    def health() -> schemas.HealthPublic:
        return schemas.HealthPublic(status="ok")

    @app.get(
        "/v1/ready", response_model=schemas.ReadinessPublic, tags=["system"], responses=errors.responses(503)
    )
    def ready() -> schemas.ReadinessPublic:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            raise Problem(503, "database_unavailable", "the database does not answer") from None
        return schemas.ReadinessPublic(status="ready", database="ok")

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        token = settings.metrics_token
        if token is None:
            raise Problem(404, "not_found", "metrics are disabled (no metrics token configured)")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
            raise Problem(401, "invalid_metrics_token", "metrics need the operator's bearer token")
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    for router in (apikeys_routes.router, ledger_routes.router, webhooks_routes.router, reserves_routes.router):
        include_flat(app, router)

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {})["ProblemDocument"] = errors.ProblemDocument.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in components["schemas"]["ProblemDocument"].pop("$defs", {}).items():
            components["schemas"].setdefault(name, sub)
        components["securitySchemes"] = {
            "CustodySignature": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Signature",
                "description": "Ed25519 request signature; also send X-Api-Key, X-Timestamp and X-Nonce.",
            }
        }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
    return app


def include_flat(app: FastAPI, router) -> None:
    """Adds the router's routes to the app's own route list. FastAPI's `include_router` wraps
    the router in an `_IncludedRouter` that, on every request, re-derives its routes' version
    and matches each route twice with scope bookkeeping: about 130 us per request with a few
    dozen routes, more than a signed read's database work. The routers here are plain: a
    prefix and a route class already applied when each route was declared, no router-level
    dependencies, lifespan or mounts, and nested inclusions without a prefix, tags or
    dependencies of their own (all asserted), so the flat list serves the same routes and the
    same OpenAPI document."""
    assert not router.dependencies and not router.callbacks, "include_flat takes plain routers only"
    for route in router.routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:  # a plain nested include_router (FastAPI >= 0.16x wraps it)
            c = route.include_context
            assert (c.prefix, c.tags, c.dependencies, c.responses, c.callbacks, c.include_in_schema, c.deprecated) == (
                "", [], [], {}, [], True, None
            ), f"include_flat: nested router with its own include options {c!r}"
            include_flat(app, nested)
            continue
        assert isinstance(route, APIRoute), f"include_flat: {route!r} is not an APIRoute"
        app.router.routes.append(route)


def _housekeeping(ctx: AppContext, stop: threading.Event) -> None:
    """Purges expired idempotency records and nonces in bounded batches, on a timer."""
    while not stop.wait(limits.API_HOUSEKEEPING_INTERVAL_S):
        try:
            idempotency.purge(ctx.engine)
            apikeys.purge_nonces(ctx.replay_engine, now_ms())
        except sa.exc.SQLAlchemyError as exc:  # a busy database: next round
            log.warning("housekeeping_failed", error=str(exc))


def app_from_env() -> FastAPI:
    if not __debug__:
        raise SystemExit("custody API: refusing to run under python -O (asserts are part of the safety checks)")
    return create_app(ApiSettings())
