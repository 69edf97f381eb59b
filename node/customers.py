"""Enterprise customers, their sub-accounts and per-asset ledger accounts; internal transfers,
the fee schedule, fiat deposits and withdrawals, and currency conversion.

Each sub-account has at most one `customer` account per asset (owner = sub-account id), with
DEBITS_MUST_NOT_EXCEED_CREDITS: a customer can never go below zero, holds included. The house
side lives in "system" accounts, one per (asset, kind): fee revenue, fiat bank, FX position…

Every call is one write through the store (so one journal entry), and every money movement is
a ledger transfer with a client-chosen id: a retry is `exists`, never a second movement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from sqlalchemy import and_, select

from node import limits
from node.ledger import (
    AccountCreate,
    AccountFlags,
    AccountKind,
    AccountResult,
    Ledger,
    LedgerError,
    LedgerKind,
    TransferCreate,
    TransferFlags,
    TransferResult,
)
from node.store import WriteTx
from node.store.models import accounts, conversions, customers, fee_schedule, fiat_movements, ledgers, sub_accounts

SYSTEM_OWNER = "system"

# Transfer codes (the `code` field): why money moved.
CODE_DEPOSIT = 1
CODE_WITHDRAWAL = 2
CODE_INTERNAL_TRANSFER = 3
CODE_FEE = 4
CODE_FIAT_DEPOSIT = 5
CODE_FIAT_WITHDRAWAL = 6
CODE_CONVERSION = 7
CODE_SWEEP = 8
CODE_NETWORK_FEE = 9

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

# The account flags per kind: liabilities and revenue never go below zero; wallets and the
# fiat bank never pay out more than they hold; clearing, fees paid, FX and suspense are free.
KIND_FLAGS: dict[str, AccountFlags] = {
    AccountKind.CUSTOMER.value: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.FEE_REVENUE.value: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountKind.HOT_WALLET.value: AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    AccountKind.COLD_WALLET.value: AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    AccountKind.DEPOSIT_WALLET.value: AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    AccountKind.FIAT_BANK.value: AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    AccountKind.DEPOSIT_CLEARING.value: AccountFlags.NONE,
    AccountKind.WITHDRAWAL_CLEARING.value: AccountFlags.NONE,
    AccountKind.NETWORK_FEES.value: AccountFlags.NONE,
    AccountKind.FX_POSITION.value: AccountFlags.NONE,
    AccountKind.SUSPENSE.value: AccountFlags.NONE,
}


def _check_id(name: str, value) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{name} must be 1..64 characters of [A-Za-z0-9_.:-]")


def _positive(name: str, value) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name} must be a positive int in base units")


@dataclass(frozen=True)
class Fee:
    """fee = clamp(fixed + ceil(amount × rate_ppm / 10^6), minimum, maximum), in base units.
    Rounded up: the ledger never books a fraction of a unit."""

    fixed: int = 0
    rate_ppm: int = 0
    minimum: int = 0
    maximum: int | None = None

    def __post_init__(self):
        for name in ("fixed", "rate_ppm", "minimum"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise ValueError(f"{name} must be a non-negative int")
        if self.rate_ppm > 1_000_000:
            raise ValueError("rate_ppm must be at most 1,000,000 (100%)")
        if self.maximum is not None and (type(self.maximum) is not int or self.maximum < self.minimum):
            raise ValueError("maximum must be an int >= minimum")

    def on(self, amount: int) -> int:
        fee = self.fixed + -(-amount * self.rate_ppm // 1_000_000)
        fee = max(fee, self.minimum)
        if self.maximum is not None:
            fee = min(fee, self.maximum)
        return fee


@dataclass(frozen=True)
class OperationResult:
    """The outcome of a composite operation: `result` is the first failing transfer result
    (or ok/exists), `results` all of them, `fee` what was charged."""

    result: TransferResult
    results: list[TransferResult]
    fee: int = 0

    @property
    def ok(self) -> bool:
        return self.result in (TransferResult.ok, TransferResult.exists)


def _first_failure(results: list[TransferResult]) -> TransferResult:
    # In a failed linked chain the culprit has its own result; the rest say linked_event_failed.
    for r in results:
        if r not in (TransferResult.ok, TransferResult.linked_event_failed):
            return r
    return results[0]


class Customers:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.store = ledger.store

    # --- customers and sub-accounts ------------------------------------------------------
    def create_customer(self, customer_id: str, name: str, *, actor: str, kind: str = "enterprise") -> str:
        """Creates the customer and its "main" sub-account (id `<customer_id>.main`).
        Returns "ok" or "exists"; a different name for an existing id raises LedgerError."""
        _check_id("customer_id", customer_id)
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ValueError("name must be 1..256 characters")
        if kind not in ("enterprise", "individual"):
            raise ValueError("kind must be enterprise or individual")

        def fn(tx: WriteTx):
            row = tx.conn.execute(select(customers).where(customers.c.id == customer_id)).one_or_none()
            if row is not None:
                if (row.name, row.kind) != (name, kind):
                    raise LedgerError("exists_with_different_name", customer_id)
                return "exists", None
            ts = tx.next_timestamp_ns()
            tx.conn.execute(customers.insert(), {"id": customer_id, "name": name, "kind": kind, "created_at_ns": ts})
            main = f"{customer_id}.main"
            tx.conn.execute(
                sub_accounts.insert(), {"id": main, "customer_id": customer_id, "name": "main", "created_at_ns": ts}
            )
            return "ok", {"customer": {"id": customer_id, "name": name, "kind": kind}, "sub_account": {"id": main}}

        return self.store.write(actor, "customer.create", fn)

    def create_sub_account(self, customer_id: str, name: str, *, actor: str) -> str:
        """Returns the sub-account id `<customer_id>.<name>` (also when it exists)."""
        _check_id("customer_id", customer_id)
        _check_id("name", name)
        sub_id = f"{customer_id}.{name}"
        if len(sub_id) > limits.LEDGER_ID_CHARS_MAX:
            raise ValueError("customer_id.name must be at most 64 characters")

        def fn(tx: WriteTx):
            if tx.conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
                raise LedgerError("customer_not_found", customer_id)
            if tx.conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_id)).first() is not None:
                return sub_id, None
            tx.conn.execute(
                sub_accounts.insert(),
                {"id": sub_id, "customer_id": customer_id, "name": name, "created_at_ns": tx.next_timestamp_ns()},
            )
            return sub_id, {"sub_account": {"id": sub_id, "customer_id": customer_id, "name": name}}

        return self.store.write(actor, "sub_account.create", fn)

    def sub_accounts(self, customer_id: str) -> list[str]:
        with self.store.reading() as conn:
            return [r.id for r in conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.customer_id == customer_id).order_by(sub_accounts.c.id))]

    # --- accounts ------------------------------------------------------------------------
    def _ensure_account(self, tx: WriteTx, owner: str, asset: str, kind: str, body: dict) -> int:
        row = tx.conn.execute(
            select(accounts.c.id).where(and_(accounts.c.owner == owner, accounts.c.ledger == asset, accounts.c.kind == kind))
        ).first()
        if row is not None:
            return row.id
        out, created = self.ledger.apply_accounts(
            tx, [AccountCreate(ledger=asset, kind=kind, flags=KIND_FLAGS[kind], owner=owner)]
        )
        result, account_id = out[0]
        if result is not AccountResult.ok:
            raise LedgerError(result, f"{kind} account of {owner} in {asset}")
        body.setdefault("accounts", []).extend(created["accounts"])
        return account_id

    def customer_account(self, sub_account_id: str, asset: str, *, actor: str) -> int:
        """The sub-account's account in `asset`, created on first use."""
        _check_id("sub_account_id", sub_account_id)

        def fn(tx: WriteTx):
            if tx.conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_account_id)).first() is None:
                raise LedgerError("sub_account_not_found", sub_account_id)
            body: dict = {}
            aid = self._ensure_account(tx, sub_account_id, asset, AccountKind.CUSTOMER.value, body)
            return aid, (body or None)

        return self.store.write(actor, "account.ensure", fn)

    def system_account(self, asset: str, kind: AccountKind | str, *, actor: str) -> int:
        kind = AccountKind(kind).value

        def fn(tx: WriteTx):
            body: dict = {}
            aid = self._ensure_account(tx, SYSTEM_OWNER, asset, kind, body)
            return aid, (body or None)

        return self.store.write(actor, "account.ensure", fn)

    # --- fees ----------------------------------------------------------------------------
    def set_fee(self, operation: str, asset: str, fee: Fee, *, actor: str) -> None:
        """Sets the fee for `operation` (internal_transfer, fiat_withdrawal, conversion,
        withdrawal, …) in `asset`, journaled with its previous value."""
        _check_id("operation", operation)

        def fn(tx: WriteTx):
            key = and_(fee_schedule.c.operation == operation, fee_schedule.c.asset == asset)
            old = tx.conn.execute(select(fee_schedule).where(key)).one_or_none()
            values = {"fixed": fee.fixed, "rate_ppm": fee.rate_ppm, "minimum": fee.minimum, "maximum": fee.maximum}
            if old is None:
                tx.conn.execute(fee_schedule.insert(), {"operation": operation, "asset": asset, **values})
            else:
                tx.conn.execute(fee_schedule.update().where(key).values(**values))
            show = lambda r: None if r is None else {"fixed": str(r["fixed"]), "rate_ppm": r["rate_ppm"], "minimum": str(r["minimum"]), "maximum": None if r["maximum"] is None else str(r["maximum"])}  # noqa: E731
            return None, {"operation": operation, "asset": asset, "before": show(old._mapping if old else None), "after": show(values)}

        self.store.write(actor, "fee.set", fn)

    def fee(self, operation: str, asset: str) -> Fee:
        with self.store.reading() as conn:
            return self._fee(conn, operation, asset)

    @staticmethod
    def _fee(conn, operation: str, asset: str) -> Fee:
        r = conn.execute(
            select(fee_schedule).where(and_(fee_schedule.c.operation == operation, fee_schedule.c.asset == asset))
        ).one_or_none()
        if r is None:
            return Fee()
        return Fee(r.fixed, r.rate_ppm, r.minimum, r.maximum)

    # --- money movements -----------------------------------------------------------------
    def _run(self, actor: str, action: str, build, record=None) -> OperationResult:
        """One write: `build(tx, body)` returns (events, fee); the transfers are applied linked,
        and `record(tx)` writes the business record only when all of them succeeded."""

        def fn(tx: WriteTx):
            body: dict = {}
            events, fee = build(tx, body)
            results = self.ledger.apply_transfers(tx, events, body)
            first = _first_failure(results)
            if first is TransferResult.ok and record is not None:
                body["record"] = record(tx)
            return OperationResult(first, results, fee), (body if body.get("transfers") or body.get("accounts") else None)

        return self.store.write(actor, action, fn)

    def internal_transfer(self, transfer_id: str, from_sub: str, to_sub: str, asset: str, amount: int, *, actor: str) -> OperationResult:
        """Moves `amount` between two customers' sub-accounts, plus the scheduled fee to fee
        revenue, all-or-nothing. Ids: `transfer_id` and `transfer_id:fee`."""
        _check_id("transfer_id", transfer_id)
        _positive("amount", amount)
        if len(transfer_id) > limits.LEDGER_ID_CHARS_MAX - 4:
            raise ValueError("transfer_id must be at most 60 characters")

        def build(tx: WriteTx, body: dict):
            src = self._customer_account(tx, from_sub, asset, body)
            dst = self._customer_account(tx, to_sub, asset, body)
            fee = self._fee(tx.conn, "internal_transfer", asset).on(amount)
            ev = [TransferCreate(transfer_id, src, dst, amount, asset, CODE_INTERNAL_TRANSFER, TransferFlags.LINKED if fee else TransferFlags.NONE)]
            if fee:
                rev = self._ensure_account(tx, SYSTEM_OWNER, asset, AccountKind.FEE_REVENUE.value, body)
                ev.append(TransferCreate(f"{transfer_id}:fee", src, rev, fee, asset, CODE_FEE))
            return ev, fee

        return self._run(actor, "customer.internal_transfer", build)

    def _customer_account(self, tx: WriteTx, sub_id: str, asset: str, body: dict) -> int:
        if tx.conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_id)).first() is None:
            raise LedgerError("sub_account_not_found", sub_id)
        return self._ensure_account(tx, sub_id, asset, AccountKind.CUSTOMER.value, body)

    def _fiat_ledger(self, tx: WriteTx, asset: str) -> None:
        kind = tx.conn.execute(select(ledgers.c.kind).where(ledgers.c.asset == asset)).scalar()
        if kind is None:
            raise LedgerError("ledger_not_found", asset)
        if kind != LedgerKind.FIAT.value:
            raise LedgerError("ledger_is_not_fiat", asset)

    def fiat_deposit(self, movement_id: str, sub_id: str, asset: str, amount: int, bank_reference: str, *, actor: str) -> OperationResult:
        """Money arrived in our bank account for the customer: fiat bank (asset) → customer."""
        return self._fiat(movement_id, sub_id, asset, amount, bank_reference, "deposit", actor)

    def fiat_withdrawal(self, movement_id: str, sub_id: str, asset: str, amount: int, bank_reference: str, *, actor: str) -> OperationResult:
        """Money paid out from our bank to the customer: customer → fiat bank, plus the fee."""
        return self._fiat(movement_id, sub_id, asset, amount, bank_reference, "withdrawal", actor)

    def _fiat(self, movement_id, sub_id, asset, amount, bank_reference, direction, actor) -> OperationResult:
        _check_id("movement_id", movement_id)
        _positive("amount", amount)
        if not isinstance(bank_reference, str) or not 1 <= len(bank_reference) <= 128:
            raise ValueError("bank_reference must be 1..128 characters")
        if len(movement_id) > limits.LEDGER_ID_CHARS_MAX - 4:
            raise ValueError("movement_id must be at most 60 characters")

        def build(tx: WriteTx, body: dict):
            self._fiat_ledger(tx, asset)
            cust = self._customer_account(tx, sub_id, asset, body)
            bank = self._ensure_account(tx, SYSTEM_OWNER, asset, AccountKind.FIAT_BANK.value, body)
            if direction == "deposit":
                return [TransferCreate(movement_id, bank, cust, amount, asset, CODE_FIAT_DEPOSIT)], 0
            fee = self._fee(tx.conn, "fiat_withdrawal", asset).on(amount)
            ev = [TransferCreate(movement_id, cust, bank, amount, asset, CODE_FIAT_WITHDRAWAL, TransferFlags.LINKED if fee else TransferFlags.NONE)]
            if fee:
                rev = self._ensure_account(tx, SYSTEM_OWNER, asset, AccountKind.FEE_REVENUE.value, body)
                ev.append(TransferCreate(f"{movement_id}:fee", cust, rev, fee, asset, CODE_FEE))
            return ev, fee

        def record(tx: WriteTx):
            row = {
                "id": movement_id, "direction": direction, "sub_account_id": sub_id, "asset": asset, "amount": amount,
                "bank_reference": bank_reference, "timestamp_ns": tx.now_ns(),
            }
            tx.conn.execute(fiat_movements.insert(), row)
            return {**row, "amount": str(amount)}

        return self._run(actor, f"fiat.{direction}", build, record)

    def convert(self, conversion_id: str, sub_id: str, source_asset: str, target_asset: str, source_amount: int,
                rate: str, *, actor: str) -> OperationResult:
        """Converts `source_amount` (base units of `source_asset`) at `rate` (a decimal string:
        whole target units per whole source unit). The customer receives the exact result
        rounded down to a base unit; the remainder — a fraction of one unit that stays with the
        house — is booked explicitly in the conversion record (`rounding`, an exact fraction).
        Four transfers, linked: customer → FX position (source), FX position → customer
        (target), and the fee in the source asset. Ids: `<id>:in`, `<id>:out`, `<id>:fee`."""
        _check_id("conversion_id", conversion_id)
        _positive("source_amount", source_amount)
        if len(conversion_id) > limits.LEDGER_ID_CHARS_MAX - 4:
            raise ValueError("conversion_id must be at most 60 characters")
        if not isinstance(rate, str) or not re.fullmatch(r"\d{1,30}(\.\d{1,30})?", rate):
            raise ValueError("rate must be a positive decimal string such as '0.9234'")
        try:
            rate_exact = Fraction(Decimal(rate))
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise ValueError("rate must be a decimal string") from exc
        if rate_exact <= 0:
            raise ValueError("rate must be positive")
        if source_asset == target_asset:
            raise ValueError("source and target assets must differ")
        outcome: dict = {}

        def build(tx: WriteTx, body: dict):
            scales = dict(tx.conn.execute(select(ledgers.c.asset, ledgers.c.scale).where(ledgers.c.asset.in_([source_asset, target_asset]))).all())
            for a in (source_asset, target_asset):
                if a not in scales:
                    raise LedgerError("ledger_not_found", a)
            exact = source_amount * rate_exact * Fraction(10) ** (scales[target_asset] - scales[source_asset])
            target_amount = exact.numerator // exact.denominator
            if target_amount <= 0:
                raise LedgerError("conversion_rounds_to_zero", f"{source_amount} at {rate}")
            outcome.update(exact=exact, target_amount=target_amount)
            src = self._customer_account(tx, sub_id, source_asset, body)
            dst = self._customer_account(tx, sub_id, target_asset, body)
            fx_src = self._ensure_account(tx, SYSTEM_OWNER, source_asset, AccountKind.FX_POSITION.value, body)
            fx_dst = self._ensure_account(tx, SYSTEM_OWNER, target_asset, AccountKind.FX_POSITION.value, body)
            fee = self._fee(tx.conn, "conversion", source_asset).on(source_amount)
            L = TransferFlags.LINKED
            ev = [
                TransferCreate(f"{conversion_id}:in", src, fx_src, source_amount, source_asset, CODE_CONVERSION, L),
                TransferCreate(f"{conversion_id}:out", fx_dst, dst, target_amount, target_asset, CODE_CONVERSION, L if fee else TransferFlags.NONE),
            ]
            if fee:
                rev = self._ensure_account(tx, SYSTEM_OWNER, source_asset, AccountKind.FEE_REVENUE.value, body)
                ev.append(TransferCreate(f"{conversion_id}:fee", src, rev, fee, source_asset, CODE_FEE))
            return ev, fee

        def record(tx: WriteTx):
            exact = outcome["exact"]
            rounding = exact - outcome["target_amount"]
            assert 0 <= rounding < 1, "rounding is less than one base unit"
            row = {
                "id": conversion_id, "sub_account_id": sub_id, "source_asset": source_asset, "target_asset": target_asset,
                "source_amount": source_amount, "rate": rate, "target_exact": f"{exact.numerator}/{exact.denominator}",
                "target_amount": outcome["target_amount"], "rounding": f"{rounding.numerator}/{rounding.denominator}",
                "timestamp_ns": tx.now_ns(),
            }
            tx.conn.execute(conversions.insert(), row)
            return {**row, "source_amount": str(source_amount), "target_amount": str(outcome["target_amount"])}

        return self._run(actor, "conversion.create", build, record)

    def conversion(self, conversion_id: str) -> dict | None:
        with self.store.reading() as conn:
            r = conn.execute(select(conversions).where(conversions.c.id == conversion_id)).one_or_none()
            return dict(r._mapping) if r else None

    # --- reads ---------------------------------------------------------------------------
    def balances(self, sub_id: str) -> dict[str, int]:
        """Posted balance per asset of a sub-account (credits − debits, base units)."""
        with self.store.reading() as conn:
            rows = conn.execute(
                select(accounts).where(and_(accounts.c.owner == sub_id, accounts.c.kind == AccountKind.CUSTOMER.value))
            )
            return {r.ledger: r.credits_posted - r.debits_posted for r in rows}

    def available(self, sub_id: str, asset: str) -> int:
        """What the sub-account can spend now: posted balance minus its holds."""
        with self.store.reading() as conn:
            r = conn.execute(
                select(accounts).where(
                    and_(accounts.c.owner == sub_id, accounts.c.ledger == asset, accounts.c.kind == AccountKind.CUSTOMER.value)
                )
            ).one_or_none()
            return 0 if r is None else r.credits_posted - r.debits_posted - r.debits_pending

    def customer_balances_snapshot(self, asset: str) -> tuple[int, int, list[tuple[str, int]]]:
        """Every customer's posted balance in `asset` at one instant, for proof of reserves:
        returns (journal seq, ledger timestamp_ns, [(customer_id, balance)] sorted by id).
        Read in one snapshot transaction; the seq names the instant (the journal head)."""
        from node.store.models import chain_head

        with self.store.reading(snapshot=True) as conn:
            head = conn.execute(select(chain_head.c.seq, chain_head.c.timestamp_ns).where(chain_head.c.id == 1)).one()
            rows = conn.execute(
                select(sub_accounts.c.customer_id, accounts.c.credits_posted, accounts.c.debits_posted)
                .join(accounts, accounts.c.owner == sub_accounts.c.id)
                .where(and_(accounts.c.ledger == asset, accounts.c.kind == AccountKind.CUSTOMER.value))
            )
            per: dict[str, int] = {}
            for r in rows:
                per[r.customer_id] = per.get(r.customer_id, 0) + r.credits_posted - r.debits_posted
            return head.seq, head.timestamp_ns, sorted(per.items())
