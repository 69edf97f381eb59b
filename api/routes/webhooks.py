"""Webhook endpoints: register, list, get, rotate the secret, ping; deliveries: list, resend."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from api import pagination
from api.errors import responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from api.schemas import (
    DeliveryStatus,
    Id,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointSecretPublic,
    WebhookEndpointsPublic,
    WebhookPingPublic,
)
from node import limits, webhooks
from node.webhooks import rfc3339

router = APIRouter(prefix="/v1", route_class=SignedRoute, tags=["webhooks"])
AUTH = (400, 401, 403, 413, 422, 429)


def endpoint_public(e: webhooks.Endpoint) -> WebhookEndpointPublic:
    return WebhookEndpointPublic(
        id=e.id,
        url=e.url,
        event_types=list(e.event_types),
        enabled=e.enabled,
        created_at=rfc3339(e.created_at_ms),
        secret_rotated_at=rfc3339(e.secret_rotated_at_ms),
    )


def with_secret(e: webhooks.Endpoint, secret: str) -> WebhookEndpointSecretPublic:
    return WebhookEndpointSecretPublic(**endpoint_public(e).model_dump(), secret=secret)


def delivery_public(d: webhooks.Delivery) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        endpoint_id=d.endpoint_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=rfc3339(d.next_attempt_at_ms) if d.status == "pending" else None,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=rfc3339(d.created_at_ms),
        updated_at=rfc3339(d.updated_at_ms),
    )


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointSecretPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 409),
)
def register_endpoint(
    body: WebhookEndpointCreate, request: Request, ctx: AppContext = Depends(ctx_of)
) -> WebhookEndpointSecretPublic:
    e, secret = webhooks.register_endpoint(
        ctx.engine,
        principal_of(request).client_id,
        body.url,
        list(body.event_types),
        allow_insecure=ctx.settings.webhook_allow_insecure_urls,
        box=ctx.box,
    )
    return with_secret(e, secret)


@router.get(
    "/webhook-endpoints", response_model=WebhookEndpointsPublic, openapi_extra=scope("read"), responses=responses(*AUTH)
)
def list_endpoints(
    request: Request,
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> WebhookEndpointsPublic:
    after = pagination.decode("webhook_endpoints", cursor)
    rows = webhooks.list_endpoints(ctx.engine, principal_of(request).client_id, after, limit + 1)
    data, next_cursor = pagination.page("webhook_endpoints", rows, limit)
    return WebhookEndpointsPublic(data=[endpoint_public(e) for e in data], next_cursor=next_cursor)


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def get_endpoint(request: Request, endpoint_id: Id = Path(), ctx: AppContext = Depends(ctx_of)):
    return endpoint_public(webhooks.get_endpoint(ctx.engine, principal_of(request).client_id, endpoint_id))


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointSecretPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 404, 409),
)
def rotate_secret(request: Request, endpoint_id: Id = Path(), ctx: AppContext = Depends(ctx_of)):
    e, secret = webhooks.rotate_secret(ctx.engine, principal_of(request).client_id, endpoint_id, box=ctx.box)
    return with_secret(e, secret)


@router.post(
    "/webhook-endpoints/{endpoint_id}/ping",
    status_code=202,
    response_model=WebhookPingPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 404, 409),
)
def ping_endpoint(request: Request, endpoint_id: Id = Path(), ctx: AppContext = Depends(ctx_of)):
    return WebhookPingPublic(event_id=webhooks.ping(ctx.engine, principal_of(request).client_id, endpoint_id))


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=WebhookDeliveriesPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def list_deliveries(
    request: Request,
    endpoint_id: Id = Path(),
    status: DeliveryStatus | None = Query(default=None, description="Only deliveries in this status, e.g. `failed`."),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> WebhookDeliveriesPublic:
    after = pagination.decode("webhook_deliveries", cursor)
    rows = webhooks.list_deliveries(ctx.engine, principal_of(request).client_id, endpoint_id, status, after, limit + 1)
    data, next_cursor = pagination.page("webhook_deliveries", rows, limit)
    return WebhookDeliveriesPublic(data=[delivery_public(d) for d in data], next_cursor=next_cursor)


@router.post(
    "/webhook-deliveries/{delivery_id}/resend",
    response_model=WebhookDeliveryPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 404, 409),
)
def resend_delivery(request: Request, delivery_id: Id = Path(), ctx: AppContext = Depends(ctx_of)):
    return delivery_public(webhooks.resend(ctx.engine, principal_of(request).client_id, delivery_id))
