"""API keys: register a key (its owner's Ed25519 public key), list, revoke, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from api import pagination
from api.errors import responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from api.schemas import ApiKeyCreate, ApiKeyPublic, ApiKeysPublic, Id, PrincipalPublic
from api.signing import b64url, b64url_decode
from node import apikeys, limits
from node.webhooks import rfc3339

router = APIRouter(prefix="/v1", route_class=SignedRoute, tags=["api keys"])
AUTH = (400, 401, 403, 422, 429)


def key_public(k: apikeys.ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=k.id,
        client_id=k.client_id,
        name=k.name,
        scopes=sorted(k.scopes),
        public_key=b64url(k.public_key),
        created_at=rfc3339(k.created_at_ms),
        revoked_at=rfc3339(k.revoked_at_ms) if k.revoked_at_ms is not None else None,
    )


@router.get("/whoami", response_model=PrincipalPublic, openapi_extra=scope(None), responses=responses(*AUTH))
def whoami(request: Request) -> PrincipalPublic:
    p = principal_of(request)
    return PrincipalPublic(key_id=p.key_id, client_id=p.client_id, scopes=sorted(p.scopes))


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 409),
)
def create_api_key(body: ApiKeyCreate, request: Request, ctx: AppContext = Depends(ctx_of)) -> ApiKeyPublic:
    p = principal_of(request)
    key = apikeys.create_api_key(
        ctx.engine, client_id=p.client_id, name=body.name, scopes=list(body.scopes), public_key=b64url_decode(body.public_key)
    )
    return key_public(key)


@router.get("/api-keys", response_model=ApiKeysPublic, openapi_extra=scope("admin"), responses=responses(*AUTH))
def list_api_keys(
    request: Request,
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> ApiKeysPublic:
    after = pagination.decode("api_keys", cursor)
    rows = apikeys.list_api_keys(ctx.engine, principal_of(request).client_id, after_seq=after, limit=limit + 1)
    data, next_cursor = pagination.page("api_keys", rows, limit)
    return ApiKeysPublic(data=[key_public(k) for k in data], next_cursor=next_cursor)


@router.post(
    "/api-keys/{key_id}/revoke",
    response_model=ApiKeyPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 404),
)
def revoke_api_key(request: Request, key_id: Id = Path(), ctx: AppContext = Depends(ctx_of)) -> ApiKeyPublic:
    return key_public(apikeys.revoke_api_key(ctx.engine, principal_of(request).client_id, key_id))
