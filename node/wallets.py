"""Wallets: hot, cold and deposit, per vault and asset, each backed by one ledger account.

A wallet account is debit-normal (an asset: what we hold on chain) with
CREDITS_MUST_NOT_EXCEED_DEBITS, so the books never pay out of a wallet more than they say it
holds. Deposit addresses are deposit wallets (one per address); the hot wallet is one account
per (vault, asset). `Wallets.reconciliation(asset)` compares what customers are owed with
what the wallets hold in the books (the chain side comes from the chain adapters).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import and_, func, select

from node.customers import KIND_FLAGS
from node.ledger import AccountCreate, AccountKind, AccountResult, Ledger, LedgerError
from node.store import WriteTx
from node.store.models import accounts, ledgers, wallets

WALLET_KINDS = {"hot": AccountKind.HOT_WALLET.value, "cold": AccountKind.COLD_WALLET.value, "deposit": AccountKind.DEPOSIT_WALLET.value}
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class Wallet:
    id: str
    vault_id: str
    asset: str
    kind: str  # hot | cold | deposit
    address: str | None
    account_id: int


def deposit_wallet_id(vault_id: str, asset: str) -> str:
    """The one deposit wallet per (vault, asset) that books what the vault's deposit addresses
    hold of `asset` (readable when it fits the 64-character id, else hashed)."""
    wid = f"deposit:{vault_id}:{asset}"
    if len(wid) <= 64:
        return wid
    return "deposit:" + hashlib.sha256(f"{vault_id}\0{asset}".encode()).hexdigest()[:48]


def deposit_wallet_account(conn, vault_id: str, asset: str) -> int | None:
    r = conn.execute(select(wallets.c.account_id).where(wallets.c.id == deposit_wallet_id(vault_id, asset))).first()
    return None if r is None else r.account_id


def ensure_deposit_wallet(ledger: Ledger, tx: WriteTx, vault_id: str, asset: str, body: dict) -> int:
    """Inside a write: the deposit wallet's account of (vault, asset), created on first use."""
    found = deposit_wallet_account(tx.conn, vault_id, asset)
    if found is not None:
        return found
    kind = AccountKind.DEPOSIT_WALLET.value
    out, created = ledger.apply_accounts(tx, [AccountCreate(ledger=asset, kind=kind, flags=KIND_FLAGS[kind], owner=deposit_wallet_id(vault_id, asset))])
    result, account_id = out[0]
    if result is not AccountResult.ok:
        raise LedgerError(result, f"deposit wallet of {vault_id} in {asset}")
    wid = deposit_wallet_id(vault_id, asset)
    tx.conn.execute(wallets.insert(), {"id": wid, "vault_id": vault_id, "asset": asset, "kind": "deposit", "address": None,
                                       "account_id": account_id, "created_at_ns": tx.next_timestamp_ns()})
    body.setdefault("accounts", []).extend(created["accounts"])
    body.setdefault("wallets", []).append({"id": wid, "vault_id": vault_id, "asset": asset, "kind": "deposit", "account_id": account_id})
    return account_id


def deposit_book_account(ledger: Ledger, tx: WriteTx, vault_id: str, asset: str, body: dict) -> int:
    """Inside a write: the account that books what a vault's deposit addresses hold of `asset`.
    Deposit addresses are children of the vault, and the chain lets the vault spend their coins
    (a bitcoin withdrawal may select them before any sweep), so they are the vault wallet's
    holdings: its account when the vault has a wallet in `asset`; else (no wallet configured)
    the vault's deposit wallet, created on first use."""
    r = tx.conn.execute(select(wallets.c.account_id).where(and_(
        wallets.c.vault_id == vault_id, wallets.c.asset == asset, wallets.c.kind != "deposit")).order_by(wallets.c.id)).first()
    if r is not None:
        return r.account_id
    return ensure_deposit_wallet(ledger, tx, vault_id, asset, body)


class Wallets:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.store = ledger.store

    def create_wallet(self, wallet_id: str, vault_id: str, asset: str, kind: str, *, address: str | None = None, actor: str) -> Wallet:
        """Creates the wallet and its ledger account; an identical retry returns the same wallet,
        a different one raises LedgerError("wallet_exists_with_different_fields")."""
        for name, value in (("wallet_id", wallet_id), ("vault_id", vault_id)):
            if not isinstance(value, str) or not _ID.match(value):
                raise ValueError(f"{name} must be 1..64 characters of [A-Za-z0-9_.:-]")
        if kind not in WALLET_KINDS:
            raise ValueError("kind must be hot, cold or deposit")
        if address is not None and (not isinstance(address, str) or not 1 <= len(address) <= 128):
            raise ValueError("address must be 1..128 characters")

        def fn(tx: WriteTx):
            row = tx.conn.execute(select(wallets).where(wallets.c.id == wallet_id)).one_or_none()
            if row is not None:
                w = Wallet(row.id, row.vault_id, row.asset, row.kind, row.address, row.account_id)
                if (w.vault_id, w.asset, w.kind, w.address) != (vault_id, asset, kind, address):
                    raise LedgerError("wallet_exists_with_different_fields", wallet_id)
                return w, None
            if tx.conn.execute(select(ledgers.c.asset).where(ledgers.c.asset == asset)).first() is None:
                raise LedgerError("ledger_not_found", asset)
            if address is not None and tx.conn.execute(select(wallets.c.id).where(wallets.c.address == address)).first():
                raise LedgerError("address_belongs_to_another_wallet", address)
            account_kind = WALLET_KINDS[kind]
            out, created = self.ledger.apply_accounts(
                tx, [AccountCreate(ledger=asset, kind=account_kind, flags=KIND_FLAGS[account_kind], owner=wallet_id)]
            )
            result, account_id = out[0]
            if result is not AccountResult.ok:
                raise LedgerError(result, wallet_id)
            tx.conn.execute(
                wallets.insert(),
                {"id": wallet_id, "vault_id": vault_id, "asset": asset, "kind": kind, "address": address,
                 "account_id": account_id, "created_at_ns": tx.next_timestamp_ns()},
            )
            w = Wallet(wallet_id, vault_id, asset, kind, address, account_id)
            return w, {"wallet": {"id": wallet_id, "vault_id": vault_id, "asset": asset, "kind": kind, "address": address, "account_id": account_id}, **created}

        return self.store.write(actor, "wallet.create", fn)

    def wallets(self, *, vault_id: str | None = None, asset: str | None = None, kind: str | None = None) -> list[Wallet]:
        q = select(wallets).order_by(wallets.c.id)
        if vault_id is not None:
            q = q.where(wallets.c.vault_id == vault_id)
        if asset is not None:
            q = q.where(wallets.c.asset == asset)
        if kind is not None:
            q = q.where(wallets.c.kind == kind)
        with self.store.reading() as conn:
            return [Wallet(r.id, r.vault_id, r.asset, r.kind, r.address, r.account_id) for r in conn.execute(q)]

    def by_address(self, address: str) -> Wallet | None:
        with self.store.reading() as conn:
            r = conn.execute(select(wallets).where(wallets.c.address == address)).one_or_none()
            return None if r is None else Wallet(r.id, r.vault_id, r.asset, r.kind, r.address, r.account_id)

    def holdings(self, asset: str) -> dict[str, int]:
        """What the books say each wallet kind holds in `asset` (posted debits − credits)."""
        out = {"hot": 0, "cold": 0, "deposit": 0}
        with self.store.reading(snapshot=True) as conn:
            rows = conn.execute(
                select(wallets.c.kind, accounts.c.debits_posted, accounts.c.credits_posted)
                .join(accounts, accounts.c.id == wallets.c.account_id)
                .where(wallets.c.asset == asset)
            )
            for r in rows:
                out[r.kind] += r.debits_posted - r.credits_posted
        return out

    def reconciliation(self, asset: str, on_chain: dict[str, int] | None = None) -> dict:
        """Customer liabilities against wallet holdings in `asset` (base units, as strings in
        the report). `on_chain`: wallet id -> balance read from the chain, when available."""
        with self.store.reading(snapshot=True) as conn:
            liab = 0
            for r in conn.execute(
                select(accounts.c.credits_posted, accounts.c.debits_posted).where(
                    and_(accounts.c.ledger == asset, accounts.c.kind == AccountKind.CUSTOMER.value)
                )
            ):
                liab += r.credits_posted - r.debits_posted
            books = 0
            for r in conn.execute(
                select(accounts.c.debits_posted, accounts.c.credits_posted)
                .join(wallets, wallets.c.account_id == accounts.c.id)
                .where(wallets.c.asset == asset)
            ):
                books += r.debits_posted - r.credits_posted
            n = conn.execute(select(func.count()).select_from(wallets).where(wallets.c.asset == asset)).scalar()
        report = {"asset": asset, "wallets": n, "customer_liabilities": str(liab), "wallet_holdings_books": str(books),
                  "covered_in_books": books >= liab}
        if on_chain is not None:
            chain_total = sum(on_chain.values())
            report["wallet_holdings_chain"] = str(chain_total)
            report["covered_on_chain"] = chain_total >= liab
        return report
