"""The double-entry ledger, with TigerBeetle's semantics on SQL.

- A ledger per asset ("BTC", "ETH", "ERC20:0x…", "USD"), with its scale (decimal places of
  one whole unit: 8 for BTC, 18 for ETH, 2 for USD). Amounts are int base units, always.
- Accounts carry four balances (debits/credits × pending/posted) and optional constraints:
  `DEBITS_MUST_NOT_EXCEED_CREDITS` (a customer cannot go below zero, pending included) and
  `CREDITS_MUST_NOT_EXCEED_DEBITS` (a wallet cannot pay out more than it holds).
- Transfers have client-chosen ids. A retry with the same id and fields is `exists`; with
  other fields `exists_with_different_<field>`: a client retry never moves money twice.
- `PENDING` transfers hold the amount (debits_pending/credits_pending); a later transfer with
  `POST_PENDING` or `VOID_PENDING` and `pending_id` resolves it exactly once; a timeout
  (`timeout_s`) expires it if nothing resolved it first.
- `LINKED` chains succeed or fail together: the failing event gets its own result, the others
  `linked_event_failed`; a chain left open at the end of the batch is `linked_event_chain_open`.
- Results are sentences, checked in the precedence order of `TransferResult` (its order).

Every write goes through `Store.write` (one serialised transaction per batch, journaled).
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, select, update

from node import limits, log
from node.store import Store, WriteTx
from node.store.models import accounts, ledgers, pending_transfers, transfers
from node.store.types import AMOUNT_MAX


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8


class AccountFlags(enum.IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class AccountKind(str, enum.Enum):
    """What an account stands for (ARCHITECTURE.md, "Money model")."""

    CUSTOMER = "customer"  # liability: credit-normal, cannot go below zero
    HOT_WALLET = "hot_wallet"  # assets on chain: debit-normal
    COLD_WALLET = "cold_wallet"
    DEPOSIT_WALLET = "deposit_wallet"
    DEPOSIT_CLEARING = "deposit_clearing"
    WITHDRAWAL_CLEARING = "withdrawal_clearing"
    NETWORK_FEES = "network_fees"
    FEE_REVENUE = "fee_revenue"
    FIAT_BANK = "fiat_bank"
    FX_POSITION = "fx_position"  # the house's side of currency conversions
    SUSPENSE = "suspense"


class LedgerKind(str, enum.Enum):
    CRYPTO = "crypto"
    FIAT = "fiat"


class TransferResult(str, enum.Enum):
    """The outcome of one transfer event. Declaration order is the precedence order: when
    several apply, the first one listed is returned."""

    ok = "ok"
    linked_event_failed = "linked_event_failed"
    linked_event_chain_open = "linked_event_chain_open"
    id_must_not_be_empty = "id_must_not_be_empty"
    id_exceeds_maximum_length = "id_exceeds_maximum_length"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"
    debit_account_id_must_not_be_zero = "debit_account_id_must_not_be_zero"
    credit_account_id_must_not_be_zero = "credit_account_id_must_not_be_zero"
    accounts_must_be_different = "accounts_must_be_different"
    pending_id_must_be_empty = "pending_id_must_be_empty"
    pending_id_must_not_be_empty = "pending_id_must_not_be_empty"
    pending_id_must_be_different = "pending_id_must_be_different"
    timeout_reserved_for_pending_transfer = "timeout_reserved_for_pending_transfer"
    overflows_timeout = "overflows_timeout"
    user_data_exceeds_maximum_length = "user_data_exceeds_maximum_length"
    amount_must_not_be_zero = "amount_must_not_be_zero"
    ledger_must_not_be_empty = "ledger_must_not_be_empty"
    code_must_not_be_zero = "code_must_not_be_zero"
    debit_account_not_found = "debit_account_not_found"
    credit_account_not_found = "credit_account_not_found"
    accounts_must_have_the_same_ledger = "accounts_must_have_the_same_ledger"
    transfer_must_have_the_same_ledger_as_accounts = "transfer_must_have_the_same_ledger_as_accounts"
    pending_transfer_not_found = "pending_transfer_not_found"
    pending_transfer_not_pending = "pending_transfer_not_pending"
    pending_transfer_has_different_debit_account_id = "pending_transfer_has_different_debit_account_id"
    pending_transfer_has_different_credit_account_id = "pending_transfer_has_different_credit_account_id"
    pending_transfer_has_different_ledger = "pending_transfer_has_different_ledger"
    pending_transfer_has_different_code = "pending_transfer_has_different_code"
    exceeds_pending_transfer_amount = "exceeds_pending_transfer_amount"
    pending_transfer_has_different_amount = "pending_transfer_has_different_amount"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_pending_id = "exists_with_different_pending_id"
    exists_with_different_timeout = "exists_with_different_timeout"
    exists_with_different_debit_account_id = "exists_with_different_debit_account_id"
    exists_with_different_credit_account_id = "exists_with_different_credit_account_id"
    exists_with_different_amount = "exists_with_different_amount"
    exists_with_different_user_data = "exists_with_different_user_data"
    exists_with_different_ledger = "exists_with_different_ledger"
    exists_with_different_code = "exists_with_different_code"
    exists = "exists"
    pending_transfer_already_posted = "pending_transfer_already_posted"
    pending_transfer_already_voided = "pending_transfer_already_voided"
    pending_transfer_expired = "pending_transfer_expired"
    overflows_debits = "overflows_debits"
    overflows_credits = "overflows_credits"
    exceeds_available_balance = "exceeds_available_balance"  # debit account: debits > credits
    exceeds_debits = "exceeds_debits"  # credit account: credits > debits


class AccountResult(str, enum.Enum):
    ok = "ok"
    id_must_not_be_negative = "id_must_not_be_negative"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"
    ledger_must_not_be_empty = "ledger_must_not_be_empty"
    kind_not_known = "kind_not_known"
    code_must_not_be_zero = "code_must_not_be_zero"
    owner_exceeds_maximum_length = "owner_exceeds_maximum_length"
    user_data_exceeds_maximum_length = "user_data_exceeds_maximum_length"
    ledger_not_found = "ledger_not_found"
    exists_with_different_ledger = "exists_with_different_ledger"
    exists_with_different_kind = "exists_with_different_kind"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_owner = "exists_with_different_owner"
    exists_with_different_user_data = "exists_with_different_user_data"
    exists = "exists"
    owner_already_has_account_of_kind = "owner_already_has_account_of_kind"


class LedgerError(Exception):
    """An expected failure of a convenience call, carrying the result sentence."""

    def __init__(self, result, detail: str = ""):
        self.result = result
        name = result.value if isinstance(result, enum.Enum) else str(result)
        super().__init__(f"{name}: {detail}" if detail else name)


def _require_int(name: str, value, minimum: int = 0) -> None:
    if type(value) is not int:
        raise ValueError(f"{name} must be an int (base units, never float), got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class TransferCreate:
    """One transfer event. For POST_PENDING/VOID_PENDING, zero/empty fields are taken from the
    pending transfer, and `amount` 0 posts (or voids) the whole pending amount."""

    id: str
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int = 0
    ledger: str = ""
    code: int = 0
    flags: TransferFlags = TransferFlags.NONE
    pending_id: str | None = None
    timeout_s: int = 0
    user_data: str | None = None

    def __post_init__(self):
        # Types only: wrong types are bad input (ValueError, nothing applied); everything
        # else is a result.
        if not isinstance(self.id, str):
            raise ValueError("transfer id must be a string")
        _require_int("debit_account_id", self.debit_account_id)
        _require_int("credit_account_id", self.credit_account_id)
        _require_int("amount", self.amount)
        _require_int("code", self.code)
        _require_int("timeout_s", self.timeout_s)
        if not isinstance(self.flags, int) or isinstance(self.flags, bool) or self.flags < 0 or self.flags > 15:
            raise ValueError("flags must be TransferFlags")
        if not isinstance(self.ledger, str):
            raise ValueError("ledger must be an asset code string")
        if self.pending_id is not None and not isinstance(self.pending_id, str):
            raise ValueError("pending_id must be a string or None")
        if self.user_data is not None and not isinstance(self.user_data, str):
            raise ValueError("user_data must be a string or None")


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as stored: every field resolved, with the ledger's timestamp."""

    id: str
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: str | None
    ledger: str
    code: int
    flags: int
    timeout_s: int
    user_data: str | None
    timestamp_ns: int

    def journal_row(self) -> list:
        return [
            self.id,
            self.debit_account_id,
            self.credit_account_id,
            str(self.amount),
            self.pending_id,
            self.ledger,
            self.code,
            int(self.flags),
            self.timeout_s,
            self.user_data,
            self.timestamp_ns,
        ]

    @classmethod
    def from_row(cls, r) -> "Transfer":
        return cls(
            r.id, r.debit_account_id, r.credit_account_id, r.amount, r.pending_id, r.ledger, r.code, r.flags,
            r.timeout_s, r.user_data, r.timestamp_ns,
        )


@dataclass(frozen=True, slots=True)
class AccountCreate:
    """`id` 0: the ledger allocates the next id. `owner`: a customer sub-account id, a wallet
    id or "system"; an owner has at most one account per (ledger, kind)."""

    ledger: str
    kind: str
    flags: AccountFlags = AccountFlags.NONE
    code: int = 1
    owner: str | None = None
    user_data: str | None = None
    id: int = 0

    def __post_init__(self):
        _require_int("id", self.id, minimum=-(2**63))
        _require_int("code", self.code)
        if not isinstance(self.flags, int) or self.flags < 0 or self.flags > 3:
            raise ValueError("flags must be AccountFlags")
        for name in ("ledger", "kind"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: int
    ledger: str
    kind: str
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def available_credit_balance(self) -> int:
        """What a credit-normal account (a customer) can still spend: posted credits minus
        posted and pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def posted_credit_balance(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def posted_debit_balance(self) -> int:
        return self.debits_posted - self.credits_posted


# --- the state machine -----------------------------------------------------------------------
_log = log.get("node.ledger")

R = TransferResult
# Plain ints in the hot loop: IntFlag arithmetic costs microseconds per operation.
_LINKED, _PENDING, _POST, _VOID = 1, 2, 4, 8
_POST_OR_VOID = _POST | _VOID
_DMNEC, _CMNED = 1, 2
assert (_LINKED, _PENDING, _POST, _VOID) == tuple(int(f) for f in (TransferFlags.LINKED, TransferFlags.PENDING, TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING))
assert (_DMNEC, _CMNED) == (int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS), int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS))
_MISSING = object()

PENDING, POSTED, VOIDED, EXPIRED = "pending", "posted", "voided", "expired"


class _Account:
    __slots__ = ("id", "ledger", "flags", "dp", "dpo", "cp", "cpo")

    def __init__(self, id, ledger, flags, dp, dpo, cp, cpo):
        self.id, self.ledger, self.flags = id, ledger, flags
        self.dp, self.dpo, self.cp, self.cpo = dp, dpo, cp, cpo

    def balances(self) -> tuple[int, int, int, int]:
        return (self.dp, self.dpo, self.cp, self.cpo)


class _Batch:
    """Applies events in order against an in-memory view of the touched rows, with an undo log
    for linked chains. Writes nothing: `Ledger._apply` writes the outcome in one go."""

    def __init__(self, tx: WriteTx, accts: dict[int, _Account], xfers: dict[str, Transfer], pstatus: dict):
        self.tx = tx
        self.accts = accts
        self.xfers = xfers  # existing (looked up) and created in this batch
        self.pstatus = pstatus  # pending id -> [status, expires_at_ns, resolved_by, resolved_at_ns]
        self.created: dict[str, Transfer] = {}
        self.pstatus_changed: dict[str, bool] = {}  # pending id -> True (new row) / False (update)
        self.before: dict[int, tuple] = {a.id: a.balances() for a in accts.values()}
        self.undo: list | None = None

    # Undo entries: ("acct", account, old balances) / ("xfer", id) / ("pstatus", id, old, old_changed)
    def _set_balances(self, a: _Account, dp, dpo, cp, cpo):
        if self.undo is not None:
            self.undo.append(("acct", a, a.balances()))
        a.dp, a.dpo, a.cp, a.cpo = dp, dpo, cp, cpo

    def _add_transfer(self, t: Transfer):
        if self.undo is not None:
            self.undo.append(("xfer", t.id))
        self.xfers[t.id] = t
        self.created[t.id] = t

    def _set_pstatus(self, pid: str, value: list, new_row: bool):
        if self.undo is not None:
            self.undo.append(("pstatus", pid, self.pstatus.get(pid, _MISSING), self.pstatus_changed.get(pid, _MISSING)))
        self.pstatus[pid] = value
        if pid not in self.pstatus_changed or new_row:
            self.pstatus_changed[pid] = new_row

    def _rollback(self):
        assert self.undo is not None
        for entry in reversed(self.undo):
            if entry[0] == "acct":
                a = entry[1]
                a.dp, a.dpo, a.cp, a.cpo = entry[2]
            elif entry[0] == "xfer":
                del self.xfers[entry[1]]
                del self.created[entry[1]]
            else:
                _, pid, old, old_changed = entry
                if old is _MISSING:
                    del self.pstatus[pid]
                else:
                    self.pstatus[pid] = old
                if old_changed is _MISSING:
                    self.pstatus_changed.pop(pid, None)
                else:
                    self.pstatus_changed[pid] = old_changed
        self.undo = None

    def run(self, events: Sequence[TransferCreate]) -> list[TransferResult]:
        results: list[TransferResult] = [R.ok] * len(events)
        n = len(events)
        i = 0
        chain_start = -1
        while i < n:
            e = events[i]
            linked = bool(e.flags & _LINKED)
            if linked and chain_start < 0:
                chain_start = i
                self.undo = []
            if linked and i == n - 1:
                result = R.linked_event_chain_open
            else:
                result = self.one(e)
            results[i] = result
            if chain_start >= 0:
                if result is not R.ok:
                    self._rollback()
                    for j in range(chain_start, i):
                        results[j] = R.linked_event_failed
                    # The rest of the chain is not applied either.
                    j = i
                    while j < n and events[j].flags & _LINKED:
                        j += 1
                        if j < n:
                            results[j] = R.linked_event_failed
                    i = j + 1
                    chain_start = -1
                    continue
                if not linked:
                    chain_start = -1
                    self.undo = None
            i += 1
        return results

    def one(self, e: TransferCreate) -> TransferResult:
        if not e.id:
            return R.id_must_not_be_empty
        if len(e.id) > limits.LEDGER_ID_CHARS_MAX:
            return R.id_exceeds_maximum_length
        f = int(e.flags)
        if (f & _PENDING and f & _POST_OR_VOID) or (f & _POST and f & _VOID):
            return R.flags_are_mutually_exclusive
        if f & _POST_OR_VOID:
            return self.post_or_void(e)
        if e.debit_account_id == 0:
            return R.debit_account_id_must_not_be_zero
        if e.credit_account_id == 0:
            return R.credit_account_id_must_not_be_zero
        if e.debit_account_id == e.credit_account_id:
            return R.accounts_must_be_different
        if e.pending_id is not None:
            return R.pending_id_must_be_empty
        if not f & _PENDING and e.timeout_s != 0:
            return R.timeout_reserved_for_pending_transfer
        if e.timeout_s > limits.LEDGER_TIMEOUT_S_MAX:
            return R.overflows_timeout
        if e.user_data is not None and len(e.user_data) > limits.LEDGER_USER_DATA_CHARS_MAX:
            return R.user_data_exceeds_maximum_length
        if e.amount == 0:
            return R.amount_must_not_be_zero
        if not e.ledger:
            return R.ledger_must_not_be_empty
        if e.code == 0:
            return R.code_must_not_be_zero
        dr = self.accts.get(e.debit_account_id)
        if dr is None:
            return R.debit_account_not_found
        cr = self.accts.get(e.credit_account_id)
        if cr is None:
            return R.credit_account_not_found
        if dr.ledger != cr.ledger:
            return R.accounts_must_have_the_same_ledger
        if e.ledger != dr.ledger:
            return R.transfer_must_have_the_same_ledger_as_accounts
        existing = self.xfers.get(e.id)
        if existing is not None:
            return _exists(e, existing)
        amount = e.amount
        pending = f & _PENDING
        if dr.dp + dr.dpo + amount > AMOUNT_MAX:
            return R.overflows_debits
        if cr.cp + cr.cpo + amount > AMOUNT_MAX:
            return R.overflows_credits
        if dr.flags & _DMNEC and dr.dp + dr.dpo + amount > dr.cpo:
            return R.exceeds_available_balance
        if cr.flags & _CMNED and cr.cp + cr.cpo + amount > cr.dpo:
            return R.exceeds_debits
        ts = self.tx.next_timestamp_ns()
        if pending:
            self._set_balances(dr, dr.dp + amount, dr.dpo, dr.cp, dr.cpo)
            self._set_balances(cr, cr.dp, cr.dpo, cr.cp + amount, cr.cpo)
            expires = ts + e.timeout_s * 1_000_000_000 if e.timeout_s else None
            self._set_pstatus(e.id, [PENDING, expires, None, None], new_row=True)
        else:
            self._set_balances(dr, dr.dp, dr.dpo + amount, dr.cp, dr.cpo)
            self._set_balances(cr, cr.dp, cr.dpo, cr.cp, cr.cpo + amount)
        self._add_transfer(
            Transfer(e.id, dr.id, cr.id, amount, None, dr.ledger, e.code, f, e.timeout_s, e.user_data, ts)
        )
        return R.ok

    def post_or_void(self, e: TransferCreate) -> TransferResult:
        post = bool(e.flags & _POST)
        if not e.pending_id:
            return R.pending_id_must_not_be_empty
        if e.pending_id == e.id:
            return R.pending_id_must_be_different
        if e.timeout_s != 0:
            return R.timeout_reserved_for_pending_transfer
        if e.user_data is not None and len(e.user_data) > limits.LEDGER_USER_DATA_CHARS_MAX:
            return R.user_data_exceeds_maximum_length
        p = self.xfers.get(e.pending_id)
        if p is None:
            return R.pending_transfer_not_found
        if not p.flags & _PENDING:
            return R.pending_transfer_not_pending
        if e.debit_account_id and e.debit_account_id != p.debit_account_id:
            return R.pending_transfer_has_different_debit_account_id
        if e.credit_account_id and e.credit_account_id != p.credit_account_id:
            return R.pending_transfer_has_different_credit_account_id
        if e.ledger and e.ledger != p.ledger:
            return R.pending_transfer_has_different_ledger
        if e.code and e.code != p.code:
            return R.pending_transfer_has_different_code
        amount = e.amount or p.amount
        if post and amount > p.amount:
            return R.exceeds_pending_transfer_amount
        if not post and amount != p.amount:
            return R.pending_transfer_has_different_amount
        existing = self.xfers.get(e.id)
        if existing is not None:
            return _exists_post_or_void(e, existing)
        status, expires_at, _, _ = self.pstatus[p.id]
        if status == POSTED:
            return R.pending_transfer_already_posted
        if status == VOIDED:
            return R.pending_transfer_already_voided
        if status == EXPIRED or (expires_at is not None and expires_at <= self.tx.now_ns()):
            return R.pending_transfer_expired
        assert status == PENDING, status
        dr = self.accts[p.debit_account_id]
        cr = self.accts[p.credit_account_id]
        assert dr.dp >= p.amount and cr.cp >= p.amount, "pending balance below a pending transfer"
        ts = self.tx.next_timestamp_ns()
        if post:
            self._set_balances(dr, dr.dp - p.amount, dr.dpo + amount, dr.cp, dr.cpo)
            self._set_balances(cr, cr.dp, cr.dpo, cr.cp - p.amount, cr.cpo + amount)
        else:
            self._set_balances(dr, dr.dp - p.amount, dr.dpo, dr.cp, dr.cpo)
            self._set_balances(cr, cr.dp, cr.dpo, cr.cp - p.amount, cr.cpo)
        self._set_pstatus(p.id, [POSTED if post else VOIDED, expires_at, e.id, ts], new_row=False)
        self._add_transfer(
            Transfer(
                e.id, p.debit_account_id, p.credit_account_id, amount, p.id, p.ledger, p.code, int(e.flags), 0,
                e.user_data, ts,
            )
        )
        return R.ok


def _exists(e: TransferCreate, x: Transfer) -> TransferResult:
    if int(e.flags) != x.flags:
        return R.exists_with_different_flags
    if x.pending_id is not None:
        return R.exists_with_different_pending_id
    if e.timeout_s != x.timeout_s:
        return R.exists_with_different_timeout
    if e.debit_account_id != x.debit_account_id:
        return R.exists_with_different_debit_account_id
    if e.credit_account_id != x.credit_account_id:
        return R.exists_with_different_credit_account_id
    if e.amount != x.amount:
        return R.exists_with_different_amount
    if e.user_data != x.user_data:
        return R.exists_with_different_user_data
    if e.ledger != x.ledger:
        return R.exists_with_different_ledger
    if e.code != x.code:
        return R.exists_with_different_code
    return R.exists


def _exists_post_or_void(e: TransferCreate, x: Transfer) -> TransferResult:
    if int(e.flags) != x.flags:
        return R.exists_with_different_flags
    if e.pending_id != x.pending_id:
        return R.exists_with_different_pending_id
    if e.timeout_s != x.timeout_s:
        return R.exists_with_different_timeout
    if e.debit_account_id and e.debit_account_id != x.debit_account_id:
        return R.exists_with_different_debit_account_id
    if e.credit_account_id and e.credit_account_id != x.credit_account_id:
        return R.exists_with_different_credit_account_id
    if e.amount and e.amount != x.amount:
        return R.exists_with_different_amount
    if e.user_data != x.user_data:
        return R.exists_with_different_user_data
    if e.ledger and e.ledger != x.ledger:
        return R.exists_with_different_ledger
    if e.code and e.code != x.code:
        return R.exists_with_different_code
    return R.exists


def _driver(tx: WriteTx):
    """The psycopg connection under the SQLAlchemy one: same transaction, raw speed (COPY,
    array parameters). PostgreSQL only."""
    assert tx.dialect == "postgresql"
    return tx.conn.connection.driver_connection


def _driver_sqlite(tx: WriteTx):
    """The sqlite3 connection under the SQLAlchemy one (same transaction): the hot path skips
    SQLAlchemy's per-row parameter processing. Amounts go in and out as decimal text."""
    assert tx.dialect == "sqlite"
    return tx.conn.connection.driver_connection


_TRANSFER_COLS = "id, debit_account_id, credit_account_id, amount, pending_id, ledger, code, flags, timeout_s, user_data, timestamp_ns"


def _array_literal(ints) -> str:
    """A PostgreSQL array literal of ints ("{1,2,3}"): digits need no quoting, and the
    server parses them as exact NUMERIC."""
    return "{" + ",".join(str(int(i)) for i in ints) + "}"


def _int(value) -> int:
    """NUMERIC(78,0) arrives as Decimal: back to int, refusing anything fractional."""
    i = int(value)
    assert i == value, "non-integral amount in the database"
    return i


def _chunks(items: Sequence, size: int = limits.LEDGER_QUERY_IDS_MAX) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Ledger:
    """The ledger's domain API over a Store. Thread-safe: every call is its own transaction."""

    def __init__(self, store: Store):
        self.store = store

    # --- ledgers -------------------------------------------------------------------------
    def create_ledger(self, asset: str, scale: int, kind: LedgerKind | str, *, actor: str) -> str:
        """Creates the ledger for `asset`; returns "ok" or "exists" (same scale and kind).
        Raises LedgerError("exists_with_different_scale"/"…_kind") or ValueError on bad input."""
        kind = LedgerKind(kind).value
        if not isinstance(asset, str) or not 1 <= len(asset) <= 64 or asset != asset.strip():
            raise ValueError("asset must be 1..64 characters without surrounding spaces")
        _require_int("scale", scale)
        if scale > 36:
            raise ValueError("scale must be 0..36")

        def fn(tx: WriteTx):
            row = tx.conn.execute(select(ledgers).where(ledgers.c.asset == asset)).one_or_none()
            if row is not None:
                if row.scale != scale:
                    raise LedgerError("exists_with_different_scale", asset)
                if row.kind != kind:
                    raise LedgerError("exists_with_different_kind", asset)
                return "exists", None
            tx.conn.execute(ledgers.insert(), {"asset": asset, "scale": scale, "kind": kind})
            return "ok", {"ledger": {"asset": asset, "scale": scale, "kind": kind}}

        return self.store.write(actor, "ledger.create", fn)

    def ledgers(self) -> dict[str, tuple[int, str]]:
        with self.store.reading() as conn:
            return {r.asset: (r.scale, r.kind) for r in conn.execute(select(ledgers))}

    # --- accounts ------------------------------------------------------------------------
    def create_accounts(self, events: Sequence[AccountCreate], *, actor: str) -> list[tuple[AccountResult, int]]:
        """Creates accounts; returns (result, account id) per event (the id is 0 on failure)."""
        events = list(events)
        if not 1 <= len(events) <= limits.LEDGER_BATCH_EVENTS_MAX:
            raise ValueError(f"a batch holds 1..{limits.LEDGER_BATCH_EVENTS_MAX} events")

        def fn(tx: WriteTx):
            out, body = self.apply_accounts(tx, events)
            return out, (body if body["accounts"] else None)

        return self.store.write(actor, "accounts.create", fn)

    def apply_accounts(self, tx: WriteTx, events: Sequence[AccountCreate]):
        """Inside a write: creates accounts, returns (results, journal body)."""
        conn = tx.conn
        known_ledgers = {r.asset for r in conn.execute(select(ledgers.c.asset))}
        kinds = {k.value for k in AccountKind}
        next_id = (conn.execute(select(accounts.c.id).order_by(accounts.c.id.desc()).limit(1)).scalar() or 0) + 1
        out: list[tuple[AccountResult, int]] = []
        created: list[dict] = []
        for e in events:
            result, account_id = self._one_account(conn, e, known_ledgers, kinds, next_id)
            if result is AccountResult.ok:
                row = {
                    "id": account_id, "ledger": e.ledger, "kind": e.kind, "flags": int(e.flags), "code": e.code,
                    "owner": e.owner, "user_data": e.user_data, "debits_pending": 0, "debits_posted": 0,
                    "credits_pending": 0, "credits_posted": 0, "timestamp_ns": tx.next_timestamp_ns(),
                }
                conn.execute(accounts.insert(), row)
                created.append({k: v for k, v in row.items() if not k.startswith(("debits", "credits"))})
                next_id = max(next_id, account_id + 1)
            out.append((result, account_id if result in (AccountResult.ok, AccountResult.exists) else 0))
        return out, {"accounts": created}

    def _one_account(self, conn, e: AccountCreate, known_ledgers, kinds, next_id) -> tuple[AccountResult, int]:
        A = AccountResult
        if e.id < 0:
            return A.id_must_not_be_negative, 0
        if e.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and e.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
            return A.flags_are_mutually_exclusive, 0
        if not e.ledger:
            return A.ledger_must_not_be_empty, 0
        if e.kind not in kinds:
            return A.kind_not_known, 0
        if e.code == 0:
            return A.code_must_not_be_zero, 0
        if e.owner is not None and len(e.owner) > limits.LEDGER_ID_CHARS_MAX:
            return A.owner_exceeds_maximum_length, 0
        if e.user_data is not None and len(e.user_data) > limits.LEDGER_USER_DATA_CHARS_MAX:
            return A.user_data_exceeds_maximum_length, 0
        if e.ledger not in known_ledgers:
            return A.ledger_not_found, 0
        x = None
        if e.id:
            x = conn.execute(select(accounts).where(accounts.c.id == e.id)).one_or_none()
        elif e.owner is not None:
            # An owner has one account per (ledger, kind): id 0 with the same owner is a retry.
            x = conn.execute(
                select(accounts).where(
                    and_(accounts.c.owner == e.owner, accounts.c.ledger == e.ledger, accounts.c.kind == e.kind)
                )
            ).one_or_none()
        if x is not None:
            for field, result in (
                ("ledger", A.exists_with_different_ledger),
                ("kind", A.exists_with_different_kind),
                ("flags", A.exists_with_different_flags),
                ("code", A.exists_with_different_code),
                ("owner", A.exists_with_different_owner),
                ("user_data", A.exists_with_different_user_data),
            ):
                if getattr(e, field) != getattr(x, field):
                    return result, 0
            return A.exists, x.id
        if e.owner is not None and e.id:
            clash = conn.execute(
                select(accounts.c.id).where(
                    and_(accounts.c.owner == e.owner, accounts.c.ledger == e.ledger, accounts.c.kind == e.kind)
                )
            ).first()
            if clash is not None:
                return A.owner_already_has_account_of_kind, 0
        return A.ok, (e.id or next_id)

    def create_account(self, e: AccountCreate, *, actor: str) -> int:
        """One account; returns its id (also for `exists`), raises LedgerError otherwise."""
        [(result, account_id)] = self.create_accounts([e], actor=actor)
        if result not in (AccountResult.ok, AccountResult.exists):
            raise LedgerError(result)
        return account_id

    # --- transfers -----------------------------------------------------------------------
    def create_transfers(self, events: Sequence[TransferCreate], *, actor: str) -> list[TransferResult]:
        """Applies a batch in one durable transaction; one result per event, in order."""
        events = list(events)
        if not 1 <= len(events) <= limits.LEDGER_BATCH_EVENTS_MAX:
            raise ValueError(f"a batch holds 1..{limits.LEDGER_BATCH_EVENTS_MAX} events")
        for e in events:
            if not isinstance(e, TransferCreate):
                raise ValueError("events must be TransferCreate")

        def fn(tx: WriteTx):
            body: dict = {}
            expired = self.apply_expiry(tx, body)
            results = self.apply_transfers(tx, events, body)
            return results, (body if body.get("transfers") or expired else None)

        return self.store.write(actor, "transfers.create", fn)

    def create_transfers_grouped(self, groups: Sequence[tuple[str, Sequence[TransferCreate]]]) -> list[list[TransferResult]]:
        """Several callers' batches in one transaction (the group-commit writer): each batch's
        results are those it would get alone, in order. The journal entry names every actor
        with the range of transfers it submitted."""
        assert groups and all(g[1] for g in groups)
        assert all(not (g[1][-1].flags & _LINKED) for g in groups), "an open chain would link to the next caller"
        events = [e for _, evs in groups for e in evs]
        assert len(events) <= limits.LEDGER_BATCH_EVENTS_MAX

        def fn(tx: WriteTx):
            body: dict = {"submitted_by": [[actor, len(evs)] for actor, evs in groups]}
            expired = self.apply_expiry(tx, body)
            results = self.apply_transfers(tx, events, body)
            return results, (body if body.get("transfers") or expired else None)

        actors = sorted({a for a, _ in groups})
        actor = actors[0] if len(actors) == 1 else f"group-commit:{len(actors)} actors"
        results = self.store.write(actor, "transfers.create", fn)
        out, i = [], 0
        for _, evs in groups:
            out.append(results[i : i + len(evs)])
            i += len(evs)
        return out

    def post_pending(self, pending_id: str, id: str, *, amount: int = 0, actor: str, user_data: str | None = None) -> TransferResult:
        [r] = self.create_transfers(
            [TransferCreate(id=id, pending_id=pending_id, amount=amount, flags=TransferFlags.POST_PENDING, user_data=user_data)],
            actor=actor,
        )
        return r

    def void_pending(self, pending_id: str, id: str, *, actor: str, user_data: str | None = None) -> TransferResult:
        [r] = self.create_transfers(
            [TransferCreate(id=id, pending_id=pending_id, flags=TransferFlags.VOID_PENDING, user_data=user_data)],
            actor=actor,
        )
        return r

    def expire_pending(self, *, actor: str = "system:expiry") -> int:
        """Expires every due pending transfer (bounded per call); returns how many."""

        def fn(tx: WriteTx):
            body: dict = {}
            n = self.apply_expiry(tx, body)
            return n, (body if n else None)

        return self.store.write(actor, "transfers.expire", fn)

    def apply_expiry(self, tx: WriteTx, body: dict) -> int:
        """Inside a write: releases due pending transfers (status expired, no transfer row)."""
        conn = tx.conn
        now = tx.now_ns()
        due = conn.execute(
            select(pending_transfers.c.id, transfers.c.debit_account_id, transfers.c.credit_account_id, transfers.c.amount)
            .join(transfers, transfers.c.id == pending_transfers.c.id)
            .where(and_(pending_transfers.c.status == PENDING, pending_transfers.c.expires_at_ns <= now))
            .order_by(pending_transfers.c.expires_at_ns)
            .limit(limits.LEDGER_EXPIRE_PER_WRITE_MAX)
        ).all()
        if not due:
            return 0
        accts = self._load_accounts(tx, {d.debit_account_id for d in due} | {d.credit_account_id for d in due})
        before = {a.id: a.balances() for a in accts.values()}
        for d in due:
            dr, cr = accts[d.debit_account_id], accts[d.credit_account_id]
            assert dr.dp >= d.amount and cr.cp >= d.amount, "pending balance below a pending transfer"
            dr.dp -= d.amount
            cr.cp -= d.amount
        conn.execute(
            update(pending_transfers)
            .where(pending_transfers.c.id == bindparam("pid"))
            .values(status=EXPIRED, resolved_at_ns=now),
            [{"pid": d.id} for d in due],
        )
        self._write_balances(tx, accts.values())
        body["expired"] = [d.id for d in due]
        body.setdefault("balances", {}).update(
            {str(a.id): {"before": [str(v) for v in before[a.id]], "after": [str(v) for v in a.balances()]} for a in accts.values()}
        )
        return len(due)

    def _load_accounts(self, tx: WriteTx, ids: set[int]) -> dict[int, _Account]:
        out: dict[int, _Account] = {}
        ids_list = sorted(i for i in ids if i)
        # No row locks here: every writer holds the chain-head lock (Store.write) for its whole
        # transaction, so nobody else changes these rows until we commit. A second lock per
        # account row would cost a tuple write each and protect nothing more.
        cols = "id, ledger, flags, debits_pending, debits_posted, credits_pending, credits_posted"
        if tx.dialect == "postgresql":
            with _driver(tx).cursor() as cur:
                cur.execute(f"SELECT {cols} FROM accounts WHERE id = ANY(%s)", (ids_list,))
                for r in cur:
                    out[r[0]] = _Account(r[0], r[1], r[2], _int(r[3]), _int(r[4]), _int(r[5]), _int(r[6]))
            return out
        cur = _driver_sqlite(tx).cursor()
        for chunk in _chunks(ids_list):
            cur.execute(f"SELECT {cols} FROM accounts WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for r in cur:
                out[r[0]] = _Account(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]))
        cur.close()
        return out

    def _write_balances(self, tx: WriteTx, changed: Iterable[_Account]) -> None:
        rows = [
            {"aid": a.id, "dp": a.dp, "dpo": a.dpo, "cp": a.cp, "cpo": a.cpo}
            for a in changed
        ]
        if rows and tx.dialect == "postgresql":
            # One set-based UPDATE; amounts travel as decimal text, never through floats.
            with _driver(tx).cursor() as cur:
                cur.execute(
                    "UPDATE accounts AS a SET debits_pending = v.dp, debits_posted = v.dpo,"
                    " credits_pending = v.cp, credits_posted = v.cpo"
                    " FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[])"
                    " AS v(id, dp, dpo, cp, cpo) WHERE a.id = v.id",
                    (
                        [r["aid"] for r in rows], _array_literal(r["dp"] for r in rows),
                        _array_literal(r["dpo"] for r in rows), _array_literal(r["cp"] for r in rows),
                        _array_literal(r["cpo"] for r in rows),
                    ),
                )
                assert cur.rowcount == len(rows), "an account to update vanished"
        elif rows:
            # SQLite: amounts are TEXT (exact decimal digits), written with the driver directly.
            cur = _driver_sqlite(tx).cursor()
            cur.executemany(
                "UPDATE accounts SET debits_pending = ?, debits_posted = ?, credits_pending = ?, credits_posted = ?"
                " WHERE id = ?",
                [(str(r["dp"]), str(r["dpo"]), str(r["cp"]), str(r["cpo"]), r["aid"]) for r in rows],
            )
            assert cur.rowcount == len(rows), "an account to update vanished"
            cur.close()

    def apply_transfers(self, tx: WriteTx, events: Sequence[TransferCreate], body: dict) -> list[TransferResult]:
        """Inside a write: applies `events` and writes their outcome; fills the journal body.
        Other domain modules (customers, fiat, conversions) call this to add transfers to their
        own write."""
        conn = tx.conn
        ids = {e.id for e in events if e.id} | {e.pending_id for e in events if e.pending_id}
        xfers = self._lookup_in_tx(tx, sorted(ids))
        pending_ids = sorted({e.pending_id for e in events if e.pending_id and e.pending_id in xfers})
        pstatus: dict[str, list] = {}
        for chunk in _chunks(pending_ids):
            for r in conn.execute(select(pending_transfers).where(pending_transfers.c.id.in_(chunk))):
                pstatus[r.id] = [r.status, r.expires_at_ns, r.resolved_by, r.resolved_at_ns]
        account_ids = {e.debit_account_id for e in events} | {e.credit_account_id for e in events}
        for pid in pending_ids:
            account_ids |= {xfers[pid].debit_account_id, xfers[pid].credit_account_id}
        accts = self._load_accounts(tx, account_ids)
        batch = _Batch(tx, accts, xfers, pstatus)
        results = batch.run(events)
        if not batch.created:
            return results
        created = list(batch.created.values())
        if tx.dialect == "postgresql":
            # COPY: the fastest way PostgreSQL takes rows, still inside this transaction.
            with _driver(tx).cursor() as cur:
                with cur.copy(f"COPY transfers ({_TRANSFER_COLS}) FROM STDIN") as copy:
                    for t in created:
                        copy.write_row(
                            (t.id, t.debit_account_id, t.credit_account_id, str(t.amount), t.pending_id, t.ledger,
                             t.code, t.flags, t.timeout_s, t.user_data, t.timestamp_ns)
                        )
        else:
            cur = _driver_sqlite(tx).cursor()
            cur.executemany(
                f"INSERT INTO transfers ({_TRANSFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (t.id, t.debit_account_id, t.credit_account_id, str(t.amount), t.pending_id, t.ledger, t.code,
                     t.flags, t.timeout_s, t.user_data, t.timestamp_ns)
                    for t in created
                ],
            )
            cur.close()
        new_p = [pid for pid, new in batch.pstatus_changed.items() if new]
        upd_p = [pid for pid, new in batch.pstatus_changed.items() if not new]
        if new_p:
            conn.execute(
                pending_transfers.insert(),
                [
                    {"id": pid, "status": pstatus[pid][0], "expires_at_ns": pstatus[pid][1], "resolved_by": pstatus[pid][2], "resolved_at_ns": pstatus[pid][3]}
                    for pid in new_p
                ],
            )
        if upd_p:
            conn.execute(
                update(pending_transfers)
                .where(pending_transfers.c.id == bindparam("pid"))
                .values(status=bindparam("st"), resolved_by=bindparam("rb"), resolved_at_ns=bindparam("ra")),
                [{"pid": pid, "st": pstatus[pid][0], "rb": pstatus[pid][2], "ra": pstatus[pid][3]} for pid in upd_p],
            )
        changed = [a for a in accts.values() if a.balances() != batch.before[a.id]]
        self._write_balances(tx, changed)
        body.setdefault("transfers", []).extend(t.journal_row() for t in created)
        bal = body.setdefault("balances", {})
        for a in changed:
            key = str(a.id)
            prior = bal.get(key, {}).get("before") or [str(v) for v in batch.before[a.id]]
            bal[key] = {"before": prior, "after": [str(v) for v in a.balances()]}
        return results

    def _lookup_in_tx(self, tx: WriteTx, ids: list[str]) -> dict[str, Transfer]:
        out: dict[str, Transfer] = {}
        if not ids:
            return out
        if tx.dialect == "postgresql":
            with _driver(tx).cursor() as cur:
                cur.execute(f"SELECT {_TRANSFER_COLS} FROM transfers WHERE id = ANY(%s)", (ids,))
                for r in cur:
                    out[r[0]] = Transfer(r[0], r[1], r[2], _int(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10])
            return out
        cur = _driver_sqlite(tx).cursor()
        for chunk in _chunks(ids):
            cur.execute(f"SELECT {_TRANSFER_COLS} FROM transfers WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for r in cur:
                out[r[0]] = Transfer(r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10])
        cur.close()
        return out

    # --- reads -----------------------------------------------------------------------------
    def balances(self, account_ids: Iterable[int]) -> dict[int, Balance]:
        ids = sorted(set(account_ids))
        out: dict[int, Balance] = {}
        with self.store.reading() as conn:
            for chunk in _chunks(ids):
                for r in conn.execute(select(accounts).where(accounts.c.id.in_(chunk))):
                    out[r.id] = Balance(
                        r.id, r.ledger, r.kind, r.flags, r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted
                    )
        return out

    def balance(self, account_id: int) -> Balance:
        b = self.balances([account_id]).get(account_id)
        if b is None:
            raise LedgerError("account_not_found", str(account_id))
        return b

    def lookup_transfers(self, ids: Iterable[str]) -> dict[str, Transfer]:
        ids = sorted(set(ids))
        out: dict[str, Transfer] = {}
        with self.store.reading() as conn:
            for chunk in _chunks(ids):
                for r in conn.execute(select(transfers).where(transfers.c.id.in_(chunk))):
                    out[r.id] = Transfer.from_row(r)
        return out

    def pending_status(self, pending_id: str) -> str | None:
        """pending | posted | voided | expired, or None when there is no such pending transfer."""
        with self.store.reading() as conn:
            return conn.execute(select(pending_transfers.c.status).where(pending_transfers.c.id == pending_id)).scalar()

    def account_transfers(self, account_id: int, *, after_timestamp_ns: int = 0, limit: int = 100) -> list[Transfer]:
        """Transfers touching `account_id`, oldest first, after a cursor (a timestamp)."""
        if not 1 <= limit <= limits.LEDGER_PAGE_MAX:
            raise ValueError(f"limit must be 1..{limits.LEDGER_PAGE_MAX}")
        with self.store.reading() as conn:
            rows = conn.execute(
                select(transfers)
                .where(
                    and_(
                        (transfers.c.debit_account_id == account_id) | (transfers.c.credit_account_id == account_id),
                        transfers.c.timestamp_ns > after_timestamp_ns,
                    )
                )
                .order_by(transfers.c.timestamp_ns)
                .limit(limit)
            )
            return [Transfer.from_row(r) for r in rows]


# --- group commit ------------------------------------------------------------------------------
class WriterClosed(Exception):
    """The group-commit writer was closed; nothing of the submission was applied."""


class WriterTimeout(Exception):
    """No outcome within the deadline. The submission may still commit: retry with the same
    transfer ids, which is safe (`exists`) and tells which."""


class _Submission:
    __slots__ = ("events", "actor", "done", "results", "error")

    def __init__(self, events, actor):
        self.events = events
        self.actor = actor
        self.done = threading.Event()
        self.results = None
        self.error = None


class GroupCommitWriter:
    """The single writer of one process: callers submit small batches from any thread; one
    thread drains the bounded queue and commits up to WRITER_GROUP_EVENTS_MAX events of many
    callers in one transaction (one fsync, one journal entry naming every caller). Results are
    exactly what each caller's own `create_transfers` call would have returned, in order.

    Why: one transfer per commit is fsync-bound (docs/performance.md, "Ledger"); grouping concurrent
    requests gives them the throughput of batches without changing their semantics, since
    events of different submissions never link to each other (a submission whose last event
    is LINKED — an open chain — is committed on its own and gets `linked_event_chain_open`).
    """

    def __init__(self, ledger: Ledger, *, group_events_max: int = limits.WRITER_GROUP_EVENTS_MAX,
                 queue_events_max: int = limits.WRITER_QUEUE_EVENTS_MAX):
        assert 1 <= group_events_max <= limits.LEDGER_BATCH_EVENTS_MAX
        assert queue_events_max >= group_events_max
        self.ledger = ledger
        self._group_max = group_events_max
        self._queue_max = queue_events_max
        self._cv = threading.Condition()
        self._queue: collections.deque[_Submission] = collections.deque()
        self._queued = 0
        self._closed = False
        self.groups_committed = 0
        self._thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
        self._thread.start()

    def create_transfers(self, events: Sequence[TransferCreate], *, actor: str,
                         timeout_s: float = limits.WRITER_SUBMIT_TIMEOUT_S) -> list[TransferResult]:
        events = list(events)
        if not 1 <= len(events) <= self._group_max:
            raise ValueError(f"a submission holds 1..{self._group_max} events")
        if not actor or len(actor) > 128:
            raise ValueError("actor must be 1..128 characters: every change names who made it")
        for e in events:
            if not isinstance(e, TransferCreate):
                raise ValueError("events must be TransferCreate")
        if events[-1].flags & _LINKED:
            return self.ledger.create_transfers(events, actor=actor)  # an open chain: alone
        sub = _Submission(events, actor)
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not self._closed and self._queued + len(events) > self._queue_max:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WriterTimeout("writer_queue_full: nothing was submitted")
                self._cv.wait(left)
            if self._closed:
                raise WriterClosed("writer_closed: nothing was submitted")
            self._queue.append(sub)
            self._queued += len(events)
            self._cv.notify_all()
        if not sub.done.wait(max(0.0, deadline - time.monotonic())):
            raise WriterTimeout("no outcome before the deadline: retry with the same ids to learn it")
        if sub.error is not None:
            raise sub.error
        return sub.results

    def close(self, timeout_s: float = limits.WRITER_SUBMIT_TIMEOUT_S) -> None:
        """Commits what is queued, then stops the writer thread."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the group-commit writer did not stop"

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                group: list[_Submission] = []
                n = 0
                while self._queue and n + len(self._queue[0].events) <= self._group_max:
                    s = self._queue.popleft()
                    group.append(s)
                    n += len(s.events)
                self._queued -= n
                self._cv.notify_all()
            try:
                outcomes = self.ledger.create_transfers_grouped([(s.actor, s.events) for s in group])
                for s, results in zip(group, outcomes):
                    s.results = results
                self.groups_committed += 1
            except Exception as exc:
                # One submission's failure must not fail the others: each on its own.
                _log.warning("group_commit_failed_retrying_one_by_one", submissions=len(group), error=repr(exc))
                for s in group:
                    try:
                        s.results = self.ledger.create_transfers(s.events, actor=s.actor)
                    except Exception as exc:  # handed to that caller
                        s.error = exc
            finally:
                for s in group:
                    s.done.set()
