"""Withdrawals (create, get, list, by external_id, cancel), approvals (pending, approve,
reject) and a sub-account's address whitelist, over node/client_withdrawals.py.

Scopes: creating and cancelling need `withdraw`; approving and rejecting `approve` (the
approver's own Ed25519 signature over the intent is what counts: the API key only carries
it); whitelist changes `withdraw`; reads `read`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api import pagination
from api.errors import Problem, responses
from api.routing import AppContext, SignedRoute, ctx_of, principal_of, scope
from api.schemas import (
    Address,
    ApprovalDecisionCreate,
    ApprovalEntryPublic,
    ApprovalPublic,
    ApprovalsPublic,
    AssetId,
    ExternalId,
    LedgerId,
    WhitelistEntriesPublic,
    WhitelistEntryCreate,
    WhitelistEntryPublic,
    WithdrawalCreate,
    WithdrawalPublic,
    WithdrawalsPublic,
    WithdrawalStatus,
)
from node import limits
from node.client_withdrawals import ClientWithdrawal, WhitelistEntry
from node.webhooks import rfc3339

router = APIRouter(prefix="/v1", route_class=SignedRoute, tags=["withdrawals"])
AUTH = (400, 401, 403, 413, 422, 429)
WithdrawalId = LedgerId


def _ns(ns: int) -> str:
    return rfc3339(ns // 1_000_000)


def withdrawal_public(c: ClientWithdrawal) -> WithdrawalPublic:
    w = c.withdrawal
    return WithdrawalPublic(
        id=w.id,
        external_id=c.external_id,
        sub_account_id=w.sub_account_id,
        asset=w.asset,
        destination=w.destination,
        amount=str(w.amount),
        fee_max=str(w.fee_max),
        status=w.status,
        sub_status=w.sub_status,
        txid=w.txid,
        txids=list(w.txids),
        fee_paid=None if w.fee_paid is None else str(w.fee_paid),
        approvals=[ApprovalEntryPublic(approver_id=a, decision=d) for a, d in c.approvals],
        created_at=_ns(w.created_at_ns),
        updated_at=_ns(w.updated_at_ns),
    )


def approval_public(c: ClientWithdrawal) -> ApprovalPublic:
    intent = c.withdrawal.intent
    return ApprovalPublic(
        withdrawal=withdrawal_public(c), intent=intent.canonical(), intent_canonical=intent.canonical_bytes().decode()
    )


def whitelist_public(e: WhitelistEntry) -> WhitelistEntryPublic:
    return WhitelistEntryPublic(
        sub_account_id=e.sub_account_id,
        asset=e.asset,
        address=e.address,
        added_at=_ns(e.added_at_ns),
        usable_after=_ns(e.usable_after_ns),
    )


# --- withdrawals -----------------------------------------------------------------------------
@router.post(
    "/withdrawals",
    status_code=201,
    response_model=WithdrawalPublic,
    openapi_extra=scope("withdraw"),
    responses={
        200: {"description": "This external_id was already submitted with these fields", "model": WithdrawalPublic},
        **responses(*AUTH, 404, 409),
    },
)
def create_withdrawal(body: WithdrawalCreate, request: Request, response: Response, ctx: AppContext = Depends(ctx_of)):
    created, w = ctx.withdrawals.create(
        principal_of(request).client_id, body.external_id, body.sub_account_id, body.asset, body.destination, int(body.amount)
    )
    if not created:
        response.status_code = 200
    return withdrawal_public(w)


@router.get("/withdrawals", response_model=WithdrawalsPublic, openapi_extra=scope("read"), responses=responses(*AUTH))
def list_withdrawals(
    request: Request,
    external_id: ExternalId | None = Query(default=None, description="Only the withdrawal with this external_id."),
    status: WithdrawalStatus | None = Query(default=None, description="Only withdrawals in this status."),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> WithdrawalsPublic:
    client_id = principal_of(request).client_id
    if external_id is not None:
        try:
            found = ctx.withdrawals.get_by_external_id(client_id, external_id)
        except Exception as exc:  # noqa: BLE001 - only "not found" is an empty page
            if getattr(exc, "code", None) == "withdrawal_not_found":
                return WithdrawalsPublic(data=[], next_cursor=None)
            raise
        keep = status is None or found.withdrawal.status == status
        return WithdrawalsPublic(data=[withdrawal_public(found)] if keep else [], next_cursor=None)
    rows = ctx.withdrawals.list(client_id, pagination.decode("withdrawals", cursor), limit + 1, status)
    data, next_cursor = pagination.page("withdrawals", rows, limit)
    return WithdrawalsPublic(data=[withdrawal_public(w) for w in data], next_cursor=next_cursor)


@router.get(
    "/withdrawals/by-external-id/{external_id}",
    response_model=WithdrawalPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def get_withdrawal_by_external_id(request: Request, external_id: ExternalId = Path(), ctx: AppContext = Depends(ctx_of)):
    return withdrawal_public(ctx.withdrawals.get_by_external_id(principal_of(request).client_id, external_id))


@router.get(
    "/withdrawals/{withdrawal_id}", response_model=WithdrawalPublic, openapi_extra=scope("read"), responses=responses(*AUTH, 404)
)
def get_withdrawal(request: Request, withdrawal_id: WithdrawalId = Path(), ctx: AppContext = Depends(ctx_of)):
    return withdrawal_public(ctx.withdrawals.get(principal_of(request).client_id, withdrawal_id))


@router.post(
    "/withdrawals/{withdrawal_id}/cancel",
    response_model=WithdrawalPublic,
    openapi_extra=scope("withdraw"),
    responses=responses(*AUTH, 404, 409),
)
def cancel_withdrawal(request: Request, withdrawal_id: WithdrawalId = Path(), ctx: AppContext = Depends(ctx_of)):
    """Only before signing; the held amount is released. Afterwards 409 `not_cancellable`."""
    return withdrawal_public(ctx.withdrawals.cancel(principal_of(request).client_id, withdrawal_id))


# --- approvals -------------------------------------------------------------------------------
@router.get("/approvals", response_model=ApprovalsPublic, openapi_extra=scope("approve"), responses=responses(*AUTH))
def list_pending_approvals(
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> ApprovalsPublic:
    """Withdrawals waiting for approvals, oldest first, with the exact intent to sign."""
    rows = ctx.withdrawals.pending_approvals(pagination.decode("approvals", cursor), limit + 1)
    data, next_cursor = pagination.page("approvals", rows, limit)
    return ApprovalsPublic(data=[approval_public(c) for c in data], next_cursor=next_cursor)


@router.get(
    "/approvals/{withdrawal_id}", response_model=ApprovalPublic, openapi_extra=scope("approve"), responses=responses(*AUTH, 404)
)
def get_approval(withdrawal_id: WithdrawalId = Path(), ctx: AppContext = Depends(ctx_of)) -> ApprovalPublic:
    return approval_public(ctx.withdrawals.approval_of(withdrawal_id))


def _decide(ctx: AppContext, withdrawal_id: str, body: ApprovalDecisionCreate, decision: str) -> ApprovalPublic:
    return approval_public(
        ctx.withdrawals.decide(withdrawal_id, body.approver_id, bytes.fromhex(body.signature), decision, body.approved_at_ms)
    )


@router.post(
    "/approvals/{withdrawal_id}/approve",
    response_model=ApprovalPublic,
    openapi_extra=scope("approve"),
    responses=responses(*AUTH, 404, 409),
)
def approve_withdrawal(
    body: ApprovalDecisionCreate, withdrawal_id: WithdrawalId = Path(), ctx: AppContext = Depends(ctx_of)
) -> ApprovalPublic:
    """`signature`: the approver's Ed25519 signature over `intent_canonical`."""
    return _decide(ctx, withdrawal_id, body, "approve")


@router.post(
    "/approvals/{withdrawal_id}/reject",
    response_model=ApprovalPublic,
    openapi_extra=scope("approve"),
    responses=responses(*AUTH, 404, 409),
)
def reject_withdrawal(
    body: ApprovalDecisionCreate, withdrawal_id: WithdrawalId = Path(), ctx: AppContext = Depends(ctx_of)
) -> ApprovalPublic:
    """`signature`: over "custody/withdrawal-reject/v1\\n" + `intent_canonical` (untimed). The hold is released."""
    if body.approved_at_ms is not None:
        raise Problem(422, "approval_time_invalid", "a rejection is not timed", field="approved_at_ms")
    return _decide(ctx, withdrawal_id, body, "reject")


# --- whitelist -------------------------------------------------------------------------------
@router.post(
    "/sub-accounts/{sub_account_id}/whitelist",
    status_code=201,
    response_model=WhitelistEntryPublic,
    openapi_extra=scope("withdraw"),
    responses={200: {"description": "Already whitelisted", "model": WhitelistEntryPublic}, **responses(*AUTH, 404)},
)
def add_whitelist_entry(
    body: WhitelistEntryCreate,
    request: Request,
    response: Response,
    sub_account_id: LedgerId = Path(),
    ctx: AppContext = Depends(ctx_of),
):
    """Usable after the policy's time-lock (`usable_after`)."""
    created, entry = ctx.withdrawals.whitelist_add(principal_of(request).client_id, sub_account_id, body.asset, body.address)
    if not created:
        response.status_code = 200
    return whitelist_public(entry)


@router.get(
    "/sub-accounts/{sub_account_id}/whitelist",
    response_model=WhitelistEntriesPublic,
    openapi_extra=scope("read"),
    responses=responses(*AUTH, 404),
)
def list_whitelist(
    sub_account_id: LedgerId = Path(),
    limit: pagination.Limit = limits.API_PAGE_LIMIT_DEFAULT,
    cursor: pagination.Cursor = None,
    ctx: AppContext = Depends(ctx_of),
) -> WhitelistEntriesPublic:
    after = _decode_pair(cursor)
    rows = ctx.withdrawals.whitelist(sub_account_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = pagination.b64url(f"v1:whitelist:{rows[-1].asset}\n{rows[-1].address}".encode()) if more and rows else None
    return WhitelistEntriesPublic(data=[whitelist_public(e) for e in rows], next_cursor=next_cursor)


def _decode_pair(cursor: str | None) -> tuple[str, str] | None:
    """The whitelist's cursor: its last (asset, address), opaque to clients."""
    if cursor is None:
        return None
    try:
        text = pagination.b64url_decode(cursor).decode("ascii")
        prefix, _, rest = text.partition("v1:whitelist:")
        asset, sep, address = rest.partition("\n")
        if prefix or not sep or not asset or not address:
            raise ValueError
        return asset, address
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "invalid_cursor", "cursor is not one this list returned", field="cursor") from None


@router.delete(
    "/sub-accounts/{sub_account_id}/whitelist/{asset}/{address}",
    response_model=WhitelistEntryPublic,
    openapi_extra=scope("withdraw"),
    responses=responses(*AUTH, 404),
)
def delete_whitelist_entry(
    request: Request,
    sub_account_id: LedgerId = Path(),
    asset: AssetId = Path(),
    address: Address = Path(),
    ctx: AppContext = Depends(ctx_of),
) -> WhitelistEntryPublic:
    return whitelist_public(ctx.withdrawals.whitelist_remove(principal_of(request).client_id, sub_account_id, asset, address))
