"""Crypto deposits: deposit addresses for customer sub-accounts, crediting what the chain
adapters observed, and (node/deposits/sweeps.py) sweeping deposit addresses to the hot wallet.

Addresses. `issue_address(sub_account_id, asset)` gives the sub-account a fresh address of the
hot vault: the non-hardened child (DEPOSIT_BRANCH, i) with one counter i per (vault, chain),
registered with the chain adapter (which then reports payments to it) and recorded here before
it is returned. On ethereum one address receives ETH and every token (family "ETH").

Crediting (node/deposits/booking.py) is decided here and only here. The chain adapters keep
no deposit status: they append what they observed to a log per chain ("seen": a payment to a
watched address at a height with its block hash; "rollback to height h"). `sync(adapter)` reads
that log after this node's cursor for the chain and, in one Store.write per batch, books the
ledger, the deposit rows, the webhook events (the transactional outbox) and the new cursor:

    first sight            pending transfer deposit clearing -> customer      deposit.pending
    at the asset's depth   post it; vault wallet <- clearing (what we hold)    deposit.credited
    reorg before depth     void it                                             deposit.voided
    reorg after credit     flag `reversal_needed` for staff, journaled;        deposit.reorged
                           the customer is never debited silently
    mined again after void a new pending deposit, epoch + 1

A pass reads the cursor, the observations after it, and the pending deposits due at the tip
(bounded: those within their depth), never the history. Transfer ids derive from the deposit
(chain, network, chain deposit id, epoch), so booking twice can only ever meet `exists`; the
cursor moves in the same write, so a crash between scan and sync loses nothing and two
syncers racing book each change once. Payments to addresses not issued here (vault wallets,
change) and our own movements are not customer credits.

Sweeps (`Sweeper`): a deposit address whose credited, unswept funds reach the asset's minimum
is swept to the hot vault's wallet address through the withdrawal pipeline (kind "sweep":
every signer peer checks that it pays our own address). An ERC-20 address first gets gas from
the gas station (a top-up, also a sweep-kind movement), then the token sweep once the top-up
completed. One movement in flight per address. Deposit addresses are children of the vault
and the chain lets the vault spend their coins, so what they hold is booked in the vault's
wallet (node.wallets.deposit_book_account): a sweep moves nothing in the books but its fee,
booked to network fees, so liabilities, books and chain still agree to the unit.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import and_, func, select

from node import limits, webhooks
from node.customers import CODE_DEPOSIT, SYSTEM_OWNER, Customers
from node.ledger import AccountKind, Ledger, TransferCreate, TransferResult
from node.log import get as get_log
from node.store import WriteTx
from node.store.deposit_models import deposit_addresses, deposits
from node.store.models import ledgers, sub_accounts
from node.wallets import deposit_book_account
from node.withdrawals import DEPOSIT_BRANCH

from node.deposits.booking import Booking
from node.deposits.records import (REVIEW_REVERSAL_NEEDED, DepositAddress, DepositError, DepositRecord, _address,
                                   _check_page, _record, family_of)

log = get_log("node.deposits")

class Deposits(Booking):
    """`chains`: chain -> its adapter (needs `network` and `address(vault_id, path)`);
    `vault_id`: the hot vault whose children are the deposit addresses; `first_index`: where
    its counter starts (two deployments sharing one vault in tests must never share addresses);
    `confirmations`: asset -> depth at which a deposit is credited (default: what each chain
    source is configured with, `DepositSource.confirmations`)."""

    def __init__(self, ledger: Ledger, chains: dict, *, vault_id: str, first_index: int = 0,
                 confirmations: dict[str, int] | None = None):
        assert type(first_index) is int and first_index >= 0
        for asset, n in (confirmations or {}).items():
            assert type(n) is int and 1 <= n <= limits.CHAINS_CONFIRMATIONS_MAX, f"depth of {asset}: {n!r}"
        self.confirmations = dict(confirmations or {})
        self.first_index = first_index
        self.ledger = ledger
        self.store = ledger.store
        self.customers = Customers(ledger)
        self.chains = chains
        self.vault_id = vault_id

    # ---------------------------------------------------------------- addresses
    def issue_address(self, sub_account_id: str, asset: str, *, client_id: str | None = None,
                      actor: str) -> DepositAddress:
        """A fresh deposit address for the sub-account, receiving `asset` (and on ethereum every
        other ethereum asset too). Refusals, in order: asset_not_supported, chain_not_configured,
        sub_account_not_found, client_id_invalid, ledger_not_found, addresses_at_max."""
        if not isinstance(asset, str) or not 1 <= len(asset) <= 64:
            raise DepositError("asset_not_supported", repr(asset)[:80])
        chain, family = family_of(asset)
        adapter = self.chains.get(chain)
        if adapter is None:
            raise DepositError("chain_not_configured", chain)
        if not isinstance(sub_account_id, str) or not 1 <= len(sub_account_id) <= limits.LEDGER_ID_CHARS_MAX:
            raise DepositError("sub_account_not_found", repr(sub_account_id)[:80])
        if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= 64):
            raise DepositError("client_id_invalid", "1..64 characters")
        with self.store.reading() as conn:
            self._check_issue(conn, sub_account_id, asset, chain, family)
            index = self._next_index(conn, chain)
        for _ in range(limits.DEPOSITS_ISSUE_ATTEMPTS_MAX):
            path = (DEPOSIT_BRANCH, index)
            # The adapter records the address for scanning first (its own store): a crash before
            # our row commits leaves a watched address no one owns, and the index is reused.
            address = adapter.address(self.vault_id, path)
            out = self._record_address(sub_account_id, client_id, chain, adapter.network, family, index, address, asset, actor)
            if out is not None:
                log.info("deposit_address_issued", sub_account=sub_account_id, chain=chain, index=index, address=address)
                return out
            index += 1  # another issuer took it meanwhile
        raise DepositError("address_index_contended", f"{self.vault_id} {chain}")

    def _check_issue(self, conn, sub_account_id: str, asset: str, chain: str, family: str) -> None:
        if conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_account_id)).first() is None:
            raise DepositError("sub_account_not_found", sub_account_id)
        if conn.execute(select(ledgers.c.asset).where(ledgers.c.asset == asset)).first() is None:
            raise DepositError("ledger_not_found", asset)
        n = conn.execute(select(func.count()).select_from(deposit_addresses).where(and_(
            deposit_addresses.c.sub_account_id == sub_account_id, deposit_addresses.c.chain == chain))).scalar_one()
        if n >= limits.DEPOSITS_ADDRESSES_PER_SUB_ACCOUNT_MAX:
            raise DepositError("addresses_at_max", f"{sub_account_id} has {n} {family} deposit addresses")

    def _next_index(self, conn, chain: str) -> int:
        top = conn.execute(select(func.max(deposit_addresses.c.path_index)).where(and_(
            deposit_addresses.c.vault_id == self.vault_id, deposit_addresses.c.chain == chain))).scalar()
        return self.first_index if top is None else max(int(top) + 1, self.first_index)

    def _record_address(self, sub_account_id, client_id, chain, network, family, index, address, asset, actor):
        def fn(tx: WriteTx):
            self._check_issue(tx.conn, sub_account_id, asset, chain, family)
            taken = tx.conn.execute(select(deposit_addresses.c.id).where(and_(
                deposit_addresses.c.vault_id == self.vault_id, deposit_addresses.c.chain == chain,
                deposit_addresses.c.path_index == index))).first()
            if taken is not None:
                return None, None
            assert tx.conn.execute(select(deposit_addresses.c.id).where(and_(
                deposit_addresses.c.chain == chain, deposit_addresses.c.address == address))).first() is None, \
                f"address {address} issued twice"
            aid = "da_" + hashlib.sha256(f"{self.vault_id}\0{chain}\0{index}".encode()).hexdigest()[:32]
            row = {"id": aid, "sub_account_id": sub_account_id, "client_id": client_id, "chain": chain, "network": network,
                   "family": family, "vault_id": self.vault_id, "path_index": index, "address": address,
                   "created_at_ns": tx.next_timestamp_ns()}
            tx.conn.execute(deposit_addresses.insert(), row)
            r = tx.conn.execute(select(deposit_addresses).where(deposit_addresses.c.id == aid)).one()
            return _address(r), {"deposit_address": {k: v for k, v in row.items() if k != "created_at_ns"}}

        return self.store.write(actor, "deposit_address.issue", fn)

    def addresses(self, sub_account_id: str, *, after_seq: int = 0, limit: int = 100) -> list[DepositAddress]:
        """The sub-account's deposit addresses in issue order (cursor: the last `seq`)."""
        _check_page(after_seq, limit)
        with self.store.reading() as conn:
            rows = conn.execute(select(deposit_addresses).where(and_(
                deposit_addresses.c.sub_account_id == sub_account_id, deposit_addresses.c.seq > after_seq))
                .order_by(deposit_addresses.c.seq).limit(limit))
            return [_address(r) for r in rows]

    def get_address(self, address_id: str) -> DepositAddress:
        with self.store.reading() as conn:
            r = conn.execute(select(deposit_addresses).where(deposit_addresses.c.id == address_id)).one_or_none()
        if r is None:
            raise DepositError("deposit_address_not_found", str(address_id)[:80])
        return _address(r)

    def address_of(self, chain: str, address: str) -> DepositAddress | None:
        with self.store.reading() as conn:
            r = conn.execute(select(deposit_addresses).where(and_(
                deposit_addresses.c.chain == chain, deposit_addresses.c.address == address))).one_or_none()
        return None if r is None else _address(r)

    # ---------------------------------------------------------------- deposit reads
    def list(self, sub_account_id: str, *, after_seq: int = 0, limit: int = 100) -> list[DepositRecord]:
        """The sub-account's deposits in the order first seen (cursor: the last `seq`)."""
        _check_page(after_seq, limit)
        with self.store.reading() as conn:
            rows = conn.execute(select(deposits).where(and_(deposits.c.sub_account_id == sub_account_id,
                                                            deposits.c.seq > after_seq))
                                .order_by(deposits.c.seq).limit(limit))
            return [_record(r) for r in rows]

    def get(self, deposit_id: str) -> DepositRecord:
        with self.store.reading() as conn:
            r = conn.execute(select(deposits).where(deposits.c.id == deposit_id)).one_or_none()
        if r is None:
            raise DepositError("deposit_not_found", str(deposit_id)[:80])
        return _record(r)

    def flagged(self, limit: int = 100) -> list[DepositRecord]:
        """Staff's queue: credited deposits that a reorg took out (reversal needed), oldest first."""
        _check_page(0, limit)
        with self.store.reading() as conn:
            rows = conn.execute(select(deposits).where(deposits.c.review == REVIEW_REVERSAL_NEEDED)
                                .order_by(deposits.c.seq).limit(limit))
            return [_record(r) for r in rows]

    # ---------------------------------------------------------------- staff: reorged credits
    def resolve_reversal(self, deposit_id: str, decision: str, *, actor: str) -> DepositRecord:
        """Staff decide a credited deposit that a reorg took out (review `reversal_needed`):
        "reverse" debits the customer (refused with `exceeds_available_balance`, nothing
        changed, when they no longer hold it), "write_off" books the loss to suspense. Either
        way the vault's wallet gives back what the chain no longer holds, so books meet the
        chain again. "keep": the
        same transaction was mined again on the new branch (the chain holds it once more),
        nothing to book. Every decision is journaled with its actor."""
        if decision not in ("reverse", "write_off", "keep"):
            raise DepositError("decision_invalid", "reverse, write_off or keep")

        def fn(tx: WriteTx):
            r = tx.conn.execute(select(deposits).where(deposits.c.id == deposit_id)).one_or_none()
            if r is None:
                raise DepositError("deposit_not_found", str(deposit_id)[:80])
            rec = _record(r)
            if rec.review != REVIEW_REVERSAL_NEEDED:
                raise DepositError("deposit_not_flagged", f"{rec.id}: {rec.status} {rec.review}")
            body: dict = {"deposit": rec.id, "decision": decision}
            if decision == "keep":
                rec = self._set(tx, rec, review="kept")
                return rec, body
            wallet = deposit_book_account(self.ledger, tx, rec.vault_id, rec.asset, body)
            if decision == "reverse":
                debit = self.customers._ensure_account(tx, rec.sub_account_id, rec.asset, AccountKind.CUSTOMER.value, body)
            else:
                debit = self.customers._ensure_account(tx, SYSTEM_OWNER, rec.asset, AccountKind.SUSPENSE.value, body)
            ev = TransferCreate(f"{rec.id}:{decision}", debit, wallet, rec.amount, rec.asset, CODE_DEPOSIT,
                                user_data=rec.txid[:limits.LEDGER_USER_DATA_CHARS_MAX])
            [res] = self.ledger.apply_transfers(tx, [ev], body)
            if res is not TransferResult.ok:
                raise DepositError(res.value, f"{decision} of {rec.amount} {rec.asset} for {rec.sub_account_id}")
            rec = self._set(tx, rec, review="reversed" if decision == "reverse" else "written_off")
            a = tx.conn.execute(select(deposit_addresses.c.client_id).where(deposit_addresses.c.id == rec.address_id)).one()
            webhooks.emit(tx.conn, a.client_id or SYSTEM_OWNER, "deposit.reversed" if decision == "reverse" else "deposit.written_off",
                          rec.public())
            return rec, body

        return self.store.write(actor, f"deposit.{decision}", fn)
