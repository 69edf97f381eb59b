"""Deposit addresses (issue, list) and deposits (list, get), over node/deposits/.

An address is issued from the node's hot vault for a sub-account (scope `deposit`); the chain
scan and the deposit sync (the node's workers) credit what it receives: `deposit.pending` at
first sight, `deposit.credited` at the asset's confirmation depth (webhooks).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from api import pagination
from api.errors import responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from api.schemas import (
    DepositAddressCreate,
    DepositAddressesPublic,
    DepositAddressPublic,
    DepositPublic,
    DepositsPublic,
    LedgerId,
)
from node import limits
from node.client_withdrawals import ClientWithdrawalError
from node.deposits import DepositError
from node.webhooks import rfc3339

router = APIRouter(prefix="/v1", route_class=SignedRoute, tags=["deposits"])
AUTH = (400, 401, 403, 413, 422, 429)


def _ns(ns: int) -> str:
    return rfc3339(ns // 1_000_000)


def _refused(exc: DepositError, field: str | None = None) -> ClientWithdrawalError:
    return ClientWithdrawalError(exc.reason, exc.detail or exc.reason, field)


def address_public(a) -> DepositAddressPublic:
    return DepositAddressPublic(id=a.id, sub_account_id=a.sub_account_id, chain=a.chain, network=a.network, assets=a.family,
                                address=a.address, created_at=_ns(a.created_at_ns))


def deposit_public(d) -> DepositPublic:
    return DepositPublic(id=d.id, sub_account_id=d.sub_account_id, address_id=d.address_id, address=d.address, chain=d.chain,
                         network=d.network, asset=d.asset, amount=str(d.amount), txid=d.txid, block_height=d.block_height,
                         status=d.status, review=d.review, created_at=_ns(d.created_at_ns), updated_at=_ns(d.updated_at_ns))


def _page(resource: str, fetch, after: int, limit: int):
    """`fetch(after_seq, n)` -> rows with `.seq` (the domain caps n at its page size, which is
    the API's largest limit): a full page asks for one more row to know whether more follow."""
    rows = fetch(after, limit)
    more = len(rows) == limit and bool(fetch(rows[-1].seq, 1))
    return rows, pagination.encode(resource, rows[-1].seq) if more else None


def _sub_exists(ctx: AppContext, sub_account_id: str) -> None:
    ctx.ops.get_sub_account(sub_account_id)  # 404 sub_account_not_found


@router.post(
    "/sub-accounts/{sub_account_id}/deposit-addresses",
    status_code=201,
    response_model=DepositAddressPublic,
    openapi_extra=scope("deposit"),
    responses=responses(*AUTH, 404),
)
def issue_deposit_address(
    body: DepositAddressCreate, request: Request, sub_account_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)
) -> DepositAddressPublic:
    """A fresh address of the hot vault for this sub-account (each call issues a new one; send
    an Idempotency-Key to make a retry return the same)."""
    _sub_exists(ctx, sub_account_id)
    client_id = principal_of(request).client_id
    try:
        a = ctx.deposits.issue_address(sub_account_id, body.asset, client_id=client_id, actor=f"api:{client_id}")
    except DepositError as exc:
        raise _refused(exc, "asset" if exc.reason in ("asset_not_supported", "chain_not_configured", "ledger_not_found") else None) from None
    return address_public(a)


@router.get(
    "/sub-accounts/{sub_account_id}/deposit-addresses",
    response_model=DepositAddressesPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def list_deposit_addresses(
    sub_account_id: LedgerId = Path(),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> DepositAddressesPublic:
    _sub_exists(ctx, sub_account_id)
    rows, next_cursor = _page("deposit_addresses", lambda after, n: ctx.deposits.addresses(sub_account_id, after_seq=after, limit=n),
                              pagination.decode("deposit_addresses", cursor), limit)
    return DepositAddressesPublic(data=[address_public(a) for a in rows], next_cursor=next_cursor)


@router.get(
    "/sub-accounts/{sub_account_id}/deposits",
    response_model=DepositsPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def list_deposits(
    sub_account_id: LedgerId = Path(),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> DepositsPublic:
    """In the order first seen on chain."""
    _sub_exists(ctx, sub_account_id)
    rows, next_cursor = _page("deposits", lambda after, n: ctx.deposits.list(sub_account_id, after_seq=after, limit=n),
                              pagination.decode("deposits", cursor), limit)
    return DepositsPublic(data=[deposit_public(d) for d in rows], next_cursor=next_cursor)


@router.get("/deposits/{deposit_id}", response_model=DepositPublic, openapi_extra=scope("read"), responses=responses(*AUTH, 404))
def get_deposit(deposit_id: LedgerId = Path(), ctx: AppContext = Depends(ctx_of)) -> DepositPublic:
    try:
        return deposit_public(ctx.deposits.get(deposit_id))
    except DepositError as exc:
        raise _refused(exc) from None
