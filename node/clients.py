"""What API clients do with the ledger: customers and sub-accounts, balances, and internal
transfers with a client `external_id` — each write together with its webhook event.

The event and the client's transfer record are written *inside the ledger's own write
transaction* (the one write path, `Store.write`): `ClientOps` hands `Customers` a store whose
`write` runs the ledger's function and then, still in the same transaction, the after-write
step of the current call. So a `transfer.created` event exists if and only if the transfer was
committed — the transactional outbox.

external_id: the ledger transfer id is derived from (client, external_id), so a retry with the
same external_id can only ever hit the same ledger transfer (`exists`, or
`exists_with_different_*` when the fields differ): a second transfer is impossible, forever.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib

import sqlalchemy as sa

from node import limits, webhooks
from node.customers import Customers, OperationResult
from node.ledger import AccountKind, Ledger, LedgerError, TransferResult
from node.store import Store, WriteTx
from node.store.api_models import client_transfers as ct
from node.store.api_models import now_ms
from node.store.models import accounts, customers, ledgers, sub_accounts

_after_write: contextvars.ContextVar = contextvars.ContextVar("after_write", default=None)


class ClientOpError(Exception):
    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field


class _OutboxStore:
    """The store as `Ledger`/`Customers` see it: `write` also runs the current call's
    after-write step (if any) inside the same transaction. Everything else is the store."""

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def write(self, actor, action, fn):
        after = _after_write.get()
        if after is None:
            return self._store.write(actor, action, fn)

        def wrapped(tx: WriteTx):
            result, body = fn(tx)
            after(tx, result)
            return result, body

        return self._store.write(actor, action, wrapped)


@contextlib.contextmanager
def _after(step):
    token = _after_write.set(step)
    try:
        yield
    finally:
        _after_write.reset(token)


@dataclasses.dataclass(frozen=True)
class ClientTransfer:
    id: str
    external_id: str
    from_sub_account_id: str
    to_sub_account_id: str
    asset: str
    amount: int
    fee: int
    created_at_ms: int


@dataclasses.dataclass(frozen=True)
class AssetBalance:
    asset: str
    posted: int  # credits_posted - debits_posted
    pending_out: int  # holds (debits_pending)
    pending_in: int  # credits_pending
    available: int  # posted - pending_out


def transfer_id_for(client_id: str, external_id: str) -> str:
    digest = hashlib.sha256(b"custody-transfer-v1\0" + client_id.encode() + b"\0" + external_id.encode()).hexdigest()
    return "trf_" + digest[:40]


def _transfer(row) -> ClientTransfer:
    return ClientTransfer(
        id=row.id,
        external_id=row.external_id,
        from_sub_account_id=row.from_sub_account_id,
        to_sub_account_id=row.to_sub_account_id,
        asset=row.asset,
        amount=row.amount,
        fee=row.fee,
        created_at_ms=row.created_at_ms,
    )


# Built once: every signed balance read runs it, and building and hashing the construct per
# call cost more than the query (the compiled form is cached by SQLAlchemy either way).
_BALANCES = (
    sa.select(sub_accounts.c.id, accounts)
    .select_from(
        sub_accounts.outerjoin(
            accounts,
            sa.and_(accounts.c.owner == sub_accounts.c.id, accounts.c.kind == AccountKind.CUSTOMER.value),
        )
    )
    .where(sub_accounts.c.id == sa.bindparam("sub_id"))
    .order_by(accounts.c.ledger)
)


class ClientOps:
    def __init__(self, store: Store):
        self.store = store
        self.ledger = Ledger(_OutboxStore(store))
        self.customers = Customers(self.ledger)

    # --- customers and sub-accounts ------------------------------------------------------
    def create_customer(self, client_id: str, customer_id: str, name: str, kind: str) -> tuple[str, dict]:
        """("ok" | "exists", the customer). Refusals: exists_with_different_name."""
        try:
            result = self.customers.create_customer(customer_id, name, actor=f"api:{client_id}", kind=kind)
        except LedgerError as exc:
            raise ClientOpError(_code(exc), str(exc), "name") from None
        except ValueError as exc:  # the domain's input checks
            raise ClientOpError("invalid_input", str(exc)) from None
        return result, self.get_customer(customer_id)

    def get_customer(self, customer_id: str) -> dict:
        with self.store.reading() as conn:
            row = conn.execute(sa.select(customers).where(customers.c.id == customer_id)).first()
        if row is None:
            raise ClientOpError("customer_not_found", f"no customer {customer_id}")
        return {"id": row.id, "name": row.name, "kind": row.kind, "created_at_ns": row.created_at_ns}

    def list_customers(self, after_ns: int, limit: int) -> list[tuple[int, dict]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(customers).where(customers.c.created_at_ns > after_ns).order_by(customers.c.created_at_ns).limit(limit)
            ).all()
        return [(r.created_at_ns, {"id": r.id, "name": r.name, "kind": r.kind, "created_at_ns": r.created_at_ns}) for r in rows]

    def create_sub_account(self, client_id: str, customer_id: str, name: str) -> dict:
        try:
            sub_id = self.customers.create_sub_account(customer_id, name, actor=f"api:{client_id}")
        except LedgerError as exc:
            raise ClientOpError(_code(exc), str(exc)) from None
        except ValueError as exc:  # the domain's input checks, e.g. "<customer>.<name>" too long
            raise ClientOpError("invalid_input", str(exc), "name") from None
        return self.get_sub_account(sub_id)

    def get_sub_account(self, sub_id: str) -> dict:
        with self.store.reading() as conn:
            row = conn.execute(sa.select(sub_accounts).where(sub_accounts.c.id == sub_id)).first()
        if row is None:
            raise ClientOpError("sub_account_not_found", f"no sub-account {sub_id}")
        return {"id": row.id, "customer_id": row.customer_id, "name": row.name, "created_at_ns": row.created_at_ns}

    def list_sub_accounts(self, customer_id: str, after_ns: int, limit: int) -> list[tuple[int, dict]]:
        self.get_customer(customer_id)
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(sub_accounts)
                .where(sub_accounts.c.customer_id == customer_id, sub_accounts.c.created_at_ns > after_ns)
                .order_by(sub_accounts.c.created_at_ns)
                .limit(limit)
            ).all()
        return [
            (r.created_at_ns, {"id": r.id, "customer_id": r.customer_id, "name": r.name, "created_at_ns": r.created_at_ns})
            for r in rows
        ]

    def assets(self) -> list[dict]:
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(ledgers).order_by(ledgers.c.asset)).all()
        return [{"asset": r.asset, "scale": r.scale, "kind": r.kind} for r in rows]

    # --- balances ------------------------------------------------------------------------
    def balances(self, sub_id: str) -> list[AssetBalance]:
        """Every asset the sub-account holds an account in, in asset order. One statement (a
        consistent read on both databases): the sub-account left-joined to its accounts."""
        with self.store.reading() as conn:
            found = conn.execute(_BALANCES, {"sub_id": sub_id}).all()
        if not found:
            raise ClientOpError("sub_account_not_found", f"no sub-account {sub_id}")
        rows = [r for r in found if r.ledger is not None]
        out = []
        for r in rows:
            posted = r.credits_posted - r.debits_posted
            out.append(
                AssetBalance(
                    asset=r.ledger,
                    posted=posted,
                    pending_out=r.debits_pending,
                    pending_in=r.credits_pending,
                    available=posted - r.debits_pending,
                )
            )
        return out

    # --- internal transfers --------------------------------------------------------------
    def create_internal_transfer(
        self, client_id: str, external_id: str, from_sub: str, to_sub: str, asset: str, amount: int
    ) -> tuple[bool, ClientTransfer]:
        """(created, transfer). A retry with the same external_id and fields returns the
        existing transfer with created=False. Refusals, in the ledger's precedence order:
        sub_account_not_found, accounts_must_be_different, exists_with_different_*,
        exceeds_available_balance, ..."""
        if not 1 <= len(external_id) <= limits.API_EXTERNAL_ID_LEN_MAX:
            raise ClientOpError("invalid_external_id", "external_id must be 1-128 characters", "external_id")
        assert type(amount) is int and amount > 0, "amount is validated by the caller"
        transfer_id = transfer_id_for(client_id, external_id)
        created_at = now_ms()

        def after(tx: WriteTx, result: OperationResult) -> None:
            if result.result is not TransferResult.ok:
                return  # nothing moved (or it already had): no record, no event
            tx.conn.execute(
                ct.insert().values(
                    id=transfer_id,
                    client_id=client_id,
                    external_id=external_id,
                    from_sub_account_id=from_sub,
                    to_sub_account_id=to_sub,
                    asset=asset,
                    amount=amount,
                    fee=result.fee,
                    created_at_ms=created_at,
                )
            )
            webhooks.emit(
                tx.conn,
                client_id,
                "transfer.created",
                {
                    "id": transfer_id,
                    "external_id": external_id,
                    "from_sub_account_id": from_sub,
                    "to_sub_account_id": to_sub,
                    "asset": asset,
                    "amount": str(amount),
                    "fee": str(result.fee),
                    "status": "completed",
                },
                at_ms=created_at,
            )

        try:
            with _after(after):
                result = self.customers.internal_transfer(
                    transfer_id, from_sub, to_sub, asset, amount, actor=f"api:{client_id}"
                )
        except LedgerError as exc:
            raise ClientOpError(_code(exc), str(exc)) from None
        except ValueError as exc:
            raise ClientOpError("invalid_input", str(exc)) from None
        if result.result is TransferResult.exists:
            return False, self.get_transfer(client_id, transfer_id)
        if result.result is TransferResult.exceeds_available_balance:
            raise ClientOpError("insufficient_funds", f"{from_sub} has less than {amount} {asset} (plus fee) available", "amount")
        if result.result is not TransferResult.ok:
            raise ClientOpError(result.result.value, f"transfer refused: {result.result.value}", _field(result.result))
        return True, self.get_transfer(client_id, transfer_id)

    def get_transfer(self, client_id: str, transfer_id: str) -> ClientTransfer:
        with self.store.reading() as conn:
            row = conn.execute(sa.select(ct).where(ct.c.id == transfer_id, ct.c.client_id == client_id)).first()
        if row is None:
            raise ClientOpError("transfer_not_found", f"no transfer {transfer_id}")
        return _transfer(row)

    def get_transfer_by_external_id(self, client_id: str, external_id: str) -> ClientTransfer:
        return self.get_transfer(client_id, transfer_id_for(client_id, external_id))

    def list_transfers(self, client_id: str, after_seq: int, limit: int) -> list[tuple[int, ClientTransfer]]:
        with self.store.reading() as conn:
            rows = conn.execute(
                sa.select(ct).where(ct.c.client_id == client_id, ct.c.seq > after_seq).order_by(ct.c.seq).limit(limit)
            ).all()
        return [(r.seq, _transfer(r)) for r in rows]


def _code(exc: LedgerError) -> str:
    r = exc.result
    return r.value if hasattr(r, "value") else str(r)


def _field(result: TransferResult) -> str | None:
    name = result.value
    if "amount" in name or "balance" in name:
        return "amount"
    if "debit_account" in name:
        return "from_sub_account_id"
    if "credit_account" in name:
        return "to_sub_account_id"
    if "ledger" in name:
        return "asset"
    return None
