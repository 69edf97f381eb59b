"""What API clients do with withdrawals: create (per-client `external_id`), read, cancel; what
approvers do (the pending list, approve, reject); the whitelist of a sub-account — and the
webhook events of every withdrawal status change, written in the same transaction.

Events (the transactional outbox). `evented_ledger(store)` gives a Ledger whose store wraps
every `Store.write`: after the write's own function, still inside its transaction, it looks at
what the write returned and emits

    withdrawal.<status>   on every status change (withdrawal.submitted at creation; not on a
                          retry that stays in its status)
    approval.requested    when a withdrawal enters pending_approval
    approval.approved     an approver's signature was accepted (approval.rejected: a rejection)

to the API client that created the withdrawal (node/webhooks.py fans it out to the client's
endpoints). The pipeline's own Withdrawals (api/withdrawals_root.World) is built over the same
kind of ledger, so an event exists if and only if its status change was committed, whichever
process made it. Withdrawals created outside the API (staff, internal movements) have no
client; their events go to the system owner, who has no endpoints.

external_id. A client's external_id is unique forever per client (api-conventions.md); the
withdrawal's own `external_id` (unique per sub-account in node/withdrawals.py) is derived from
(client, external_id), and the `client_withdrawals` row is written in the same transaction as
the withdrawal. So a retry can only meet the same withdrawal (`exists`), or be refused
(`exists_with_different_*`), never create a second one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import sqlalchemy as sa

from node import limits, webhooks
from node import risk as rk
from node.clients import _after, _after_write
from node.customers import SYSTEM_OWNER
from node.ledger import Ledger, LedgerError
from node.store import Store, WriteTx
from node.store.api_models import client_withdrawals as cw
from node.store.api_models import now_ms
from node.store.models import sub_accounts
from node.store.withdrawal_models import address_whitelist, withdrawals
from node.withdrawals import (CANCELLABLE, KIND_WITHDRAWAL, PENDING_APPROVAL, SUBMITTED, StaleStatus, Withdrawal,
                              WithdrawalError, Withdrawals, chain_of)

# A withdrawal's WithdrawalError reason -> the API code, where they differ (the reason is the
# domain's sentence; the API's vocabulary is the conventions', e.g. insufficient_funds).
API_CODES = {
    "exceeds_available_balance": "insufficient_funds",
    "exceeds_credits": "insufficient_funds",
    "debit_account_not_found": "sub_account_not_found",
    "vault_unknown": "no_hot_vault",
}
# Domain reasons that are conflicts with the resource's current state (409).
CONFLICT_REASONS = frozenset({"not_cancellable", "not_pending_approval", "already_decided_by_approver",
                              "too_many_approvals"})
ADDRESS_RE = re.compile(r"^[A-Za-z0-9]{14,128}$")


class ClientWithdrawalError(Exception):
    """An expected refusal (code, detail, field); nothing changed."""

    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field


def _refusal(exc: WithdrawalError, field: str | None = None) -> ClientWithdrawalError:
    return ClientWithdrawalError(API_CODES.get(exc.reason, exc.reason), exc.detail or exc.reason, field)


def derived_external_id(client_id: str, external_id: str) -> str:
    h = hashlib.sha256(b"custody-withdrawal-v1\0" + client_id.encode() + b"\0" + external_id.encode()).hexdigest()
    return "api_" + h[:40]


# ---------------------------------------------------------------- the outbox
def _withdrawal_in(result) -> Withdrawal | None:
    if isinstance(result, Withdrawal):
        return result
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Withdrawal):
        return result[1] if result[0] == "ok" else None  # ("exists", w): nothing changed
    return None


def client_of(conn, withdrawal_id: str) -> tuple[str, str] | None:
    """(client_id, the client's external_id) of a withdrawal created through the API."""
    r = conn.execute(sa.select(cw.c.client_id, cw.c.external_id).where(cw.c.withdrawal_id == withdrawal_id)).first()
    return None if r is None else (r.client_id, r.external_id)


def event_data(w: Withdrawal, external_id: str | None) -> dict:
    return {"id": w.id, "external_id": external_id, "sub_account_id": w.sub_account_id, "asset": w.asset,
            "destination": w.destination, "amount": str(w.amount), "status": w.status, "sub_status": w.sub_status,
            "txid": w.txid, "fee_paid": None if w.fee_paid is None else str(w.fee_paid)}


def emit_withdrawal_events(tx: WriteTx, action: str, result, body: dict | None) -> None:
    w = _withdrawal_in(result)
    if w is None or w.kind != KIND_WITHDRAWAL or not action.startswith("withdrawal."):
        return
    owner = client_of(tx.conn, w.id)
    client_id, external_id = owner if owner is not None else (SYSTEM_OWNER, None)
    data = event_data(w, external_id)
    body = body or {}
    if action == "withdrawal.submit":
        webhooks.emit(tx.conn, client_id, "withdrawal.submitted", data)
        return
    if action == "withdrawal.approval":
        decision = body.get("decision")
        webhooks.emit(tx.conn, client_id, "approval.approved" if decision == "approve" else "approval.rejected",
                      {"withdrawal_id": w.id, "approver_id": body.get("approver"), "approvals": body.get("approvals"),
                       "needed": body.get("needed"), "withdrawal": data})
        if w.status != PENDING_APPROVAL:
            webhooks.emit(tx.conn, client_id, f"withdrawal.{w.status}", data)
        return
    if body.get("from") == w.status:
        return  # a retry inside one status (queued -> queued, confirming -> confirming)
    webhooks.emit(tx.conn, client_id, f"withdrawal.{w.status}", data)
    if w.status == PENDING_APPROVAL:
        webhooks.emit(tx.conn, client_id, "approval.requested", {"withdrawal_id": w.id, "sub_status": w.sub_status,
                                                                  "intent": w.intent.canonical(), "withdrawal": data})


class EventedStore:
    """The store as Ledger/Withdrawals see it: each `write` runs its function, then the current
    call's after-write step (node.clients._after), then emits the withdrawal events — all in the
    one transaction. Everything else is the store."""

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def write(self, actor, action, fn):
        after = _after_write.get()

        def wrapped(tx: WriteTx):
            result, body = fn(tx)
            if after is not None:
                after(tx, result)
            emit_withdrawal_events(tx, action, result, body)
            return result, body

        return self._store.write(actor, action, wrapped)


def evented_ledger(store: Store) -> Ledger:
    return Ledger(EventedStore(store))


# ---------------------------------------------------------------- client operations
@dataclasses.dataclass(frozen=True)
class WhitelistEntry:
    sub_account_id: str
    asset: str
    address: str
    added_at_ns: int
    usable_after_ns: int


@dataclasses.dataclass(frozen=True)
class ClientWithdrawal:
    withdrawal: Withdrawal
    external_id: str | None  # the client's; None for one created outside the API
    approvals: tuple[tuple[str, str], ...] = ()  # (approver_id, decision)


class ClientWithdrawals:
    """`withdrawals` must be built over `evented_ledger(store)` (asserted): its writes carry the
    client record and the events. `hot_vault_id`: the vault that pays client withdrawals
    (default: the only vault of kind hot)."""

    def __init__(self, withdrawals: Withdrawals, *, hot_vault_id: str | None = None):
        assert isinstance(withdrawals.store, EventedStore), "withdrawals must write through evented_ledger()"
        self.withdrawals = withdrawals
        self.store = withdrawals.store
        self._hot_vault_id = hot_vault_id

    def hot_vault_id(self) -> str:
        if self._hot_vault_id is not None:
            return self._hot_vault_id
        hot = sorted(vid for vid, (_v, kind) in self.withdrawals.vaults().items() if kind == "hot")
        if len(hot) != 1:
            raise ClientWithdrawalError("no_hot_vault", f"the node has {len(hot)} hot vaults and none configured to pay")
        return hot[0]

    # --- create ----------------------------------------------------------------------------
    def create(self, client_id: str, external_id: str, sub_account_id: str, asset: str, destination: str,
               amount: int) -> tuple[bool, ClientWithdrawal]:
        """(created, withdrawal). A retry with the same external_id and fields returns the
        existing one with created=False; other fields: exists_with_different_<field> (409)."""
        assert type(amount) is int and amount > 0, "amount is validated by the caller"
        if not 1 <= len(external_id) <= limits.API_EXTERNAL_ID_LEN_MAX:
            raise ClientWithdrawalError("invalid_external_id", "external_id must be 1-128 characters", "external_id")
        with self.store.reading() as conn:
            old = conn.execute(sa.select(cw).where(cw.c.client_id == client_id, cw.c.external_id == external_id)).first()
        if old is not None and old.sub_account_id != sub_account_id:
            raise ClientWithdrawalError("exists_with_different_sub_account_id", f"external_id {external_id} names another withdrawal",
                                        "sub_account_id")
        try:
            chain_of(asset)
        except WithdrawalError:
            raise ClientWithdrawalError("asset_not_supported", f"{asset} cannot be withdrawn on chain", "asset") from None
        vault_id = self.hot_vault_id()
        created_at = now_ms()

        def after(tx: WriteTx, result) -> None:
            status, w = result
            if status != "ok":
                return
            clash = tx.conn.execute(sa.select(cw.c.withdrawal_id).where(cw.c.client_id == client_id,
                                                                        cw.c.external_id == external_id)).first()
            if clash is not None:  # a concurrent twin on another sub-account won: roll this one back
                raise ClientWithdrawalError("exists_with_different_sub_account_id",
                                            f"external_id {external_id} names another withdrawal", "sub_account_id")
            tx.conn.execute(cw.insert().values(withdrawal_id=w.id, client_id=client_id, external_id=external_id,
                                               sub_account_id=sub_account_id, created_at_ms=created_at))

        try:
            with _after(after):
                status, w = self.withdrawals.submit(sub_account_id, derived_external_id(client_id, external_id), asset,
                                                    destination, amount, vault_id=vault_id, actor=f"api:{client_id}")
        except WithdrawalError as exc:
            field = {"amount_must_be_positive_integer": "amount", "destination_invalid": "destination",
                     "exceeds_available_balance": "amount", "sub_account_not_found": "sub_account_id",
                     "chain_not_configured": "asset"}.get(exc.reason)
            if exc.reason.startswith("exists_with_different_"):
                field = exc.reason.removeprefix("exists_with_different_")
            raise _refusal(exc, field) from None
        except LedgerError as exc:
            raise ClientWithdrawalError(getattr(exc.result, "value", str(exc.result)), str(exc)) from None
        except sa.exc.IntegrityError:  # the unique (client, external_id) met a concurrent twin
            raise ClientWithdrawalError("external_id_reused", f"external_id {external_id} is being used by another request",
                                        "external_id") from None
        return status == "ok", self.get(client_id, w.id)

    # --- reads -----------------------------------------------------------------------------
    def get(self, client_id: str, withdrawal_id: str) -> ClientWithdrawal:
        with self.store.reading() as conn:
            r = conn.execute(sa.select(withdrawals, cw.c.external_id.label("client_external_id"))
                             .select_from(withdrawals.join(cw, cw.c.withdrawal_id == withdrawals.c.id))
                             .where(withdrawals.c.id == withdrawal_id, cw.c.client_id == client_id)).first()
        if r is None:
            raise ClientWithdrawalError("withdrawal_not_found", f"no withdrawal {withdrawal_id}")
        return ClientWithdrawal(Withdrawal.from_row(r), r.client_external_id, self._approvals(withdrawal_id))

    def get_by_external_id(self, client_id: str, external_id: str) -> ClientWithdrawal:
        with self.store.reading() as conn:
            r = conn.execute(sa.select(cw.c.withdrawal_id).where(cw.c.client_id == client_id,
                                                                 cw.c.external_id == external_id)).first()
        if r is None:
            raise ClientWithdrawalError("withdrawal_not_found", f"no withdrawal with external_id {external_id}")
        return self.get(client_id, r.withdrawal_id)

    def list(self, client_id: str, after_seq: int, limit: int, status: str | None = None) -> list[tuple[int, ClientWithdrawal]]:
        assert 1 <= limit <= limits.API_PAGE_LIMIT_MAX + 1
        q = (sa.select(withdrawals, cw.c.seq, cw.c.external_id.label("client_external_id"))
             .select_from(withdrawals.join(cw, cw.c.withdrawal_id == withdrawals.c.id))
             .where(cw.c.client_id == client_id, cw.c.seq > after_seq).order_by(cw.c.seq).limit(limit))
        if status is not None:
            q = q.where(withdrawals.c.status == status)
        with self.store.reading() as conn:
            rows = conn.execute(q).all()
        return [(r.seq, ClientWithdrawal(Withdrawal.from_row(r), r.client_external_id)) for r in rows]

    def _approvals(self, withdrawal_id: str) -> tuple[tuple[str, str], ...]:
        return tuple((a, d) for a, d, _sig in self.withdrawals.approvals(withdrawal_id))

    # --- cancel ----------------------------------------------------------------------------
    def cancel(self, client_id: str, withdrawal_id: str) -> ClientWithdrawal:
        """Only before signing (submitted, pending_screening, pending_approval, queued): the hold
        is voided in the same write, journaled; afterwards 409 not_cancellable."""
        cur = self.get(client_id, withdrawal_id).withdrawal
        if cur.status not in CANCELLABLE:
            raise ClientWithdrawalError("not_cancellable", f"withdrawal {withdrawal_id} is {cur.status}")
        try:
            self.withdrawals.cancel(withdrawal_id, actor=f"api:{client_id}")
        except WithdrawalError as exc:
            raise _refusal(exc) from None
        except StaleStatus:  # the pipeline moved it on meanwhile
            raise ClientWithdrawalError("not_cancellable", f"withdrawal {withdrawal_id} moved on; read it again") from None
        return self.get(client_id, withdrawal_id)

    # --- approvals -------------------------------------------------------------------------
    def pending_approvals(self, after_seq: int, limit: int) -> list[tuple[int, ClientWithdrawal]]:
        """Every withdrawal waiting for approvals (approvers are the deployment's staff; the
        policy's approver keys, not the API key, decide what counts), oldest first."""
        q = (sa.select(withdrawals, cw.c.seq, cw.c.external_id.label("client_external_id"))
             .select_from(withdrawals.join(cw, cw.c.withdrawal_id == withdrawals.c.id))
             .where(withdrawals.c.status == PENDING_APPROVAL, cw.c.seq > after_seq).order_by(cw.c.seq).limit(limit))
        with self.store.reading() as conn:
            rows = conn.execute(q).all()
        return [(r.seq, ClientWithdrawal(Withdrawal.from_row(r), r.client_external_id, self._approvals(r.id))) for r in rows]

    def approval_of(self, withdrawal_id: str) -> ClientWithdrawal:
        with self.store.reading() as conn:
            r = conn.execute(sa.select(withdrawals, cw.c.external_id.label("client_external_id"))
                             .select_from(withdrawals.join(cw, cw.c.withdrawal_id == withdrawals.c.id))
                             .where(withdrawals.c.id == withdrawal_id)).first()
        if r is None:
            raise ClientWithdrawalError("withdrawal_not_found", f"no withdrawal {withdrawal_id}")
        return ClientWithdrawal(Withdrawal.from_row(r), r.client_external_id, self._approvals(withdrawal_id))

    def decide(self, withdrawal_id: str, approver_id: str, signature: bytes, decision: str,
               approved_at_ms: int | None = None) -> ClientWithdrawal:
        """The approver's Ed25519 signature over `approval_message(intent, decision)` — exactly
        what `custody approve` signs; verified by Withdrawals.approve against the active policy."""
        assert decision in ("approve", "reject")
        self.approval_of(withdrawal_id)  # 404 first
        try:
            self.withdrawals.approve(withdrawal_id, approver_id, signature, decision, approved_at_ms=approved_at_ms)
        except WithdrawalError as exc:
            raise _refusal(exc, "signature" if exc.reason in ("approval_signature_invalid", "bad_signature") else None) from None
        except StaleStatus:
            raise ClientWithdrawalError("not_pending_approval", f"withdrawal {withdrawal_id} moved on; read it again") from None
        return self.approval_of(withdrawal_id)

    # --- whitelist -------------------------------------------------------------------------
    def _check_sub(self, conn, sub_account_id: str) -> None:
        if conn.execute(sa.select(sub_accounts.c.id).where(sub_accounts.c.id == sub_account_id)).first() is None:
            raise ClientWithdrawalError("sub_account_not_found", f"no sub-account {sub_account_id}")

    def whitelist_add(self, client_id: str, sub_account_id: str, asset: str, address: str) -> tuple[bool, WhitelistEntry]:
        """(created, entry): usable for withdrawals after the active policy's time-lock."""
        with self.store.reading() as conn:
            self._check_sub(conn, sub_account_id)
        try:
            chain_of(asset)
        except WithdrawalError:
            raise ClientWithdrawalError("asset_not_supported", f"{asset} cannot be withdrawn on chain", "asset") from None
        if not ADDRESS_RE.match(address):
            raise ClientWithdrawalError("address_invalid", "14-128 letters and digits", "address")
        before = self._entry(sub_account_id, asset, address)
        try:
            self.withdrawals.whitelist(sub_account_id, asset, address, actor=f"api:{client_id}")
        except WithdrawalError as exc:
            raise _refusal(exc, "address") from None
        entry = self._entry(sub_account_id, asset, address)
        assert entry is not None
        return before is None, entry

    def _entry(self, sub_account_id: str, asset: str, address: str) -> WhitelistEntry | None:
        with self.store.reading() as conn:
            r = conn.execute(sa.select(address_whitelist).where(
                address_whitelist.c.sub_account_id == sub_account_id, address_whitelist.c.asset == asset,
                address_whitelist.c.address == rk.normalise_address(address))).first()
        return None if r is None else WhitelistEntry(r.sub_account_id, r.asset, r.address, r.added_at_ns, r.usable_after_ns)

    def whitelist(self, sub_account_id: str, after: tuple[str, str] | None, limit: int) -> list[WhitelistEntry]:
        """In (asset, address) order, after the cursor's (asset, address)."""
        q = sa.select(address_whitelist).where(address_whitelist.c.sub_account_id == sub_account_id)
        if after is not None:
            q = q.where(sa.tuple_(address_whitelist.c.asset, address_whitelist.c.address) > sa.tuple_(*after))
        q = q.order_by(address_whitelist.c.asset, address_whitelist.c.address).limit(limit)
        with self.store.reading() as conn:
            self._check_sub(conn, sub_account_id)
            rows = conn.execute(q).all()
        return [WhitelistEntry(r.sub_account_id, r.asset, r.address, r.added_at_ns, r.usable_after_ns) for r in rows]

    def whitelist_remove(self, client_id: str, sub_account_id: str, asset: str, address: str) -> WhitelistEntry:
        """Removes the entry (journaled). Withdrawals already screened keep their decision."""
        norm = rk.normalise_address(address)

        def fn(tx: WriteTx):
            self._check_sub(tx.conn, sub_account_id)
            key = sa.and_(address_whitelist.c.sub_account_id == sub_account_id, address_whitelist.c.asset == asset,
                          address_whitelist.c.address == norm)
            r = tx.conn.execute(sa.select(address_whitelist).where(key)).first()
            if r is None:
                raise ClientWithdrawalError("whitelist_entry_not_found", f"{asset} {address} is not whitelisted on {sub_account_id}")
            tx.conn.execute(address_whitelist.delete().where(key))
            entry = WhitelistEntry(r.sub_account_id, r.asset, r.address, r.added_at_ns, r.usable_after_ns)
            return entry, {"sub_account_id": sub_account_id, "asset": asset, "address": norm, "removed": True}

        return self.store.write(f"api:{client_id}", "whitelist.remove", fn)


__all__ = ["ClientWithdrawals", "ClientWithdrawalError", "EventedStore", "evented_ledger", "SUBMITTED"]
