"""Customers, sub-accounts, balances, assets and internal transfers, over the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api import pagination
from api.errors import responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from api.schemas import (
    AssetPublic,
    AssetsPublic,
    BalancePublic,
    BalancesPublic,
    CustomerCreate,
    CustomerPublic,
    CustomersPublic,
    ExternalId,
    LedgerId,
    SubAccountCreate,
    SubAccountPublic,
    SubAccountsPublic,
    TransferCreate,
    TransferPublic,
    TransfersPublic,
)
from node import clients, limits
from node.webhooks import rfc3339

router = APIRouter(prefix="/v1", route_class=SignedRoute, tags=["customers and transfers"])
AUTH = (400, 401, 403, 422, 429)


def _ns(ns: int) -> str:
    return rfc3339(ns // 1_000_000)


def customer_public(c: dict) -> CustomerPublic:
    return CustomerPublic(id=c["id"], name=c["name"], kind=c["kind"], created_at=_ns(c["created_at_ns"]))


def sub_public(s: dict) -> SubAccountPublic:
    return SubAccountPublic(id=s["id"], customer_id=s["customer_id"], name=s["name"], created_at=_ns(s["created_at_ns"]))


def transfer_public(t: clients.ClientTransfer) -> TransferPublic:
    return TransferPublic(
        id=t.id,
        external_id=t.external_id,
        from_sub_account_id=t.from_sub_account_id,
        to_sub_account_id=t.to_sub_account_id,
        asset=t.asset,
        amount=str(t.amount),
        fee=str(t.fee),
        status="completed",
        created_at=rfc3339(t.created_at_ms),
    )


@router.get("/assets", response_model=AssetsPublic, openapi_extra=scope("read"), responses=responses(*AUTH))
def list_assets(ctx: AppContext = Depends(ctx_of)) -> AssetsPublic:
    return AssetsPublic(data=[AssetPublic(**a) for a in ctx.ops.assets()])


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerPublic,
    openapi_extra=scope("admin"),
    responses={200: {"description": "The customer already existed with this name", "model": CustomerPublic}, **responses(*AUTH, 409)},
)
def create_customer(body: CustomerCreate, request: Request, response: Response, ctx: AppContext = Depends(ctx_of)):
    result, customer = ctx.ops.create_customer(principal_of(request).client_id, body.id, body.name, body.kind)
    if result == "exists":
        response.status_code = 200
    return customer_public(customer)


@router.get("/customers", response_model=CustomersPublic, openapi_extra=scope("read"), responses=responses(*AUTH))
def list_customers(
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> CustomersPublic:
    rows = ctx.ops.list_customers(pagination.decode("customers", cursor), limit + 1)
    data, next_cursor = pagination.page("customers", rows, limit)
    return CustomersPublic(data=[customer_public(c) for c in data], next_cursor=next_cursor)


@router.get(
    "/customers/{customer_id}", response_model=CustomerPublic, openapi_extra=scope("read"), responses=responses(*AUTH, 404)
)
def get_customer(customer_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)) -> CustomerPublic:
    return customer_public(ctx.ops.get_customer(customer_id))


@router.post(
    "/customers/{customer_id}/sub-accounts",
    status_code=201,
    response_model=SubAccountPublic,
    openapi_extra=scope("admin"),
    responses=responses(*AUTH, 404, 409),
)
def create_sub_account(
    body: SubAccountCreate, request: Request, customer_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)
) -> SubAccountPublic:
    return sub_public(ctx.ops.create_sub_account(principal_of(request).client_id, customer_id, body.name))


@router.get(
    "/customers/{customer_id}/sub-accounts",
    response_model=SubAccountsPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def list_sub_accounts(
    customer_id: LedgerId = Path(),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> SubAccountsPublic:
    rows = ctx.ops.list_sub_accounts(customer_id, pagination.decode("sub_accounts", cursor), limit + 1)
    data, next_cursor = pagination.page("sub_accounts", rows, limit)
    return SubAccountsPublic(data=[sub_public(s) for s in data], next_cursor=next_cursor)


@router.get(
    "/sub-accounts/{sub_account_id}/balances",
    response_model=BalancesPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def get_balances(sub_account_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)) -> BalancesPublic:
    rows = ctx.ops.balances(sub_account_id)
    return BalancesPublic(
        sub_account_id=sub_account_id,
        data=[
            BalancePublic(
                asset=b.asset,
                posted=str(b.posted),
                pending_out=str(b.pending_out),
                pending_in=str(b.pending_in),
                available=str(b.available),
            )
            for b in rows
        ],
    )


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferPublic,
    openapi_extra=scope("withdraw"),
    responses={
        200: {"description": "This external_id was already executed with these fields", "model": TransferPublic},
        **responses(*AUTH, 404, 409),
    },
)
def create_transfer(body: TransferCreate, request: Request, response: Response, ctx: AppContext = Depends(ctx_of)):
    created, t = ctx.ops.create_internal_transfer(
        principal_of(request).client_id,
        body.external_id,
        body.from_sub_account_id,
        body.to_sub_account_id,
        body.asset,
        int(body.amount),
    )
    if not created:
        response.status_code = 200
    return transfer_public(t)


@router.get("/transfers", response_model=TransfersPublic, openapi_extra=scope("read"), responses=responses(*AUTH, 404))
def list_transfers(
    request: Request,
    external_id: ExternalId | None = Query(default=None, description="Only the transfer with this external_id."),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> TransfersPublic:
    client_id = principal_of(request).client_id
    if external_id is not None:
        try:
            return TransfersPublic(data=[transfer_public(ctx.ops.get_transfer_by_external_id(client_id, external_id))], next_cursor=None)
        except clients.ClientOpError as exc:
            if exc.code == "transfer_not_found":
                return TransfersPublic(data=[], next_cursor=None)
            raise
    rows = ctx.ops.list_transfers(client_id, pagination.decode("transfers", cursor), limit + 1)
    data, next_cursor = pagination.page("transfers", rows, limit)
    return TransfersPublic(data=[transfer_public(t) for t in data], next_cursor=next_cursor)


@router.get(
    "/transfers/{transfer_id}", response_model=TransferPublic, openapi_extra=scope("read"), responses=responses(*AUTH, 404)
)
def get_transfer(request: Request, transfer_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)) -> TransferPublic:
    return transfer_public(ctx.ops.get_transfer(principal_of(request).client_id, transfer_id))
