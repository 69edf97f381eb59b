"""Crypto deposits: deposit addresses for customer sub-accounts, crediting what the chain
adapters saw, and sweeping deposit addresses to the hot wallet.

Addresses. `issue_address(sub_account_id, asset)` gives the sub-account a fresh address of the
hot vault: the non-hardened child (DEPOSIT_BRANCH, i) with one counter i per (vault, chain),
registered with the chain adapter (which then reports payments to it) and recorded here before
it is returned. On ethereum one address receives ETH and every token (family "ETH").

Crediting is level-triggered: `sync(adapter)` reads the adapter's stored deposits (not the
events of one scan, so a crash between scan and sync loses nothing) and makes the ledger agree,
in one write per batch with the webhook events (the transactional outbox):

    first sight            pending transfer deposit clearing -> customer      deposit.pending
    at the asset's depth   post it; vault wallet <- clearing (what we hold)    deposit.credited
    reorg before depth     void it                                             deposit.voided
    reorg after credit     flag `reversal_needed` for staff, journaled;        deposit.reorged
                           the customer is never debited silently

Transfer ids derive from the deposit (chain, network, chain deposit id, epoch), so a second
sync can only ever meet `exists`. Payments to addresses not issued here (vault wallets,
change) are not customer credits.

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

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select

from node import limits, webhooks
from node.customers import CODE_DEPOSIT, SYSTEM_OWNER, Customers
from node.ledger import AccountKind, Ledger, LedgerError, TransferCreate, TransferFlags, TransferResult
from node.log import get as get_log
from node.ports import (DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED, Deposit,
                        DepositSource, Path)
from node.store import WriteTx
from node.store.deposit_models import deposit_addresses, deposits
from node.store.models import ledgers, sub_accounts
from node.wallets import deposit_book_account
from node.store.withdrawal_models import withdrawals as withdrawals_table
from node.withdrawals import ACTIVE, DEPOSIT_BRANCH, INTERNAL_KINDS, KIND_SWEEP, VAULT_WALLET_PATH

log = get_log("node.deposits")

# Deposit addresses are (DEPOSIT_BRANCH, i) below the vault's group key (node.withdrawals).
REVIEW_REVERSAL_NEEDED = "reversal_needed"
STATUSES = (DEPOSIT_PENDING, DEPOSIT_CREDITED, DEPOSIT_VOIDED, DEPOSIT_REORGED_AFTER_CREDIT)
ERC20_PREFIX = "ERC20:"


def family_of(asset: str) -> tuple[str, str]:
    """(chain, address family) of an asset: BTC on bitcoin; ETH and ERC-20 tokens on ethereum."""
    if asset == "BTC":
        return "bitcoin", "BTC"
    if asset == "ETH" or (asset.startswith(ERC20_PREFIX) and len(asset) > len(ERC20_PREFIX)):
        return "ethereum", "ETH"
    raise DepositError("asset_not_supported", asset)


def deposit_record_id(chain: str, network: str, chain_deposit_id: str, epoch: int) -> str:
    """The deposit's id, also its pending transfer's id (<= 44 chars, so suffixes fit 64)."""
    h = hashlib.sha256(f"custody-deposit-v1\0{chain}\0{network}\0{chain_deposit_id}\0{epoch}".encode()).hexdigest()
    return "dep_" + h[:40]


class DepositError(Exception):
    """An expected refusal named as a sentence (`sub_account_not_found`, ...); nothing changed."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DepositAddress:
    id: str
    seq: int
    sub_account_id: str
    client_id: str | None
    chain: str
    network: str
    family: str  # BTC | ETH (one ethereum address receives ETH and every token)
    vault_id: str
    path: Path
    address: str
    created_at_ns: int

    def public(self) -> dict:
        return {"id": self.id, "sub_account_id": self.sub_account_id, "chain": self.chain, "network": self.network,
                "assets": self.family, "address": self.address, "created_at_ns": self.created_at_ns}


@dataclass(frozen=True)
class DepositRecord:
    id: str
    seq: int
    chain: str
    network: str
    chain_deposit_id: str
    epoch: int
    asset: str
    txid: str
    address: str
    address_id: str
    sub_account_id: str
    vault_id: str
    amount: int
    block_height: int
    block_hash: str
    status: str
    review: str | None
    swept_by: str | None
    created_at_ns: int
    updated_at_ns: int

    def public(self) -> dict:
        return {"id": self.id, "sub_account_id": self.sub_account_id, "address_id": self.address_id,
                "address": self.address, "chain": self.chain, "network": self.network, "asset": self.asset,
                "amount": str(self.amount), "txid": self.txid, "chain_deposit_id": self.chain_deposit_id,
                "epoch": self.epoch, "block_height": self.block_height, "status": self.status, "review": self.review,
                "created_at_ns": self.created_at_ns, "updated_at_ns": self.updated_at_ns}


@dataclass
class SyncReport:
    """What one sync pass booked. `more`: changes were left for the next pass (batch bound)."""

    pending: int = 0
    credited: int = 0
    voided: int = 0
    flagged: int = 0
    skipped: int = 0  # deposits to addresses not issued here, or in assets without a ledger
    more: bool = False
    changed: list[str] = field(default_factory=list)  # deposit ids, in booking order

    @property
    def total(self) -> int:
        return self.pending + self.credited + self.voided + self.flagged


def _address(r) -> DepositAddress:
    return DepositAddress(r.id, r.seq, r.sub_account_id, r.client_id, r.chain, r.network, r.family, r.vault_id,
                          (DEPOSIT_BRANCH, int(r.path_index)), r.address, r.created_at_ns)


def _record(r) -> DepositRecord:
    return DepositRecord(r.id, r.seq, r.chain, r.network, r.chain_deposit_id, r.epoch, r.asset, r.txid, r.address,
                         r.address_id, r.sub_account_id, r.vault_id, int(r.amount), r.block_height, r.block_hash, r.status,
                         r.review, r.swept_by, r.created_at_ns, r.updated_at_ns)


def _check_page(after_seq, limit) -> None:
    if type(after_seq) is not int or after_seq < 0:
        raise DepositError("after_seq_invalid", "a non-negative integer")
    if type(limit) is not int or not 1 <= limit <= limits.DEPOSITS_PAGE_MAX:
        raise DepositError("limit_out_of_range", f"1..{limits.DEPOSITS_PAGE_MAX}")


class Deposits:
    """`chains`: chain -> its adapter (needs `network` and `address(vault_id, path)`);
    `vault_id`: the hot vault whose children are the deposit addresses; `first_index`: where
    its counter starts (two deployments sharing one vault in tests must never share addresses)."""

    def __init__(self, ledger: Ledger, chains: dict, *, vault_id: str, first_index: int = 0):
        assert type(first_index) is int and first_index >= 0
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

    # ---------------------------------------------------------------- crediting
    def sync(self, adapter: DepositSource, *, actor: str = "system:deposits") -> SyncReport:
        """Makes the ledger agree with the adapter's stored deposits (after its `scan()`).
        Idempotent: a second call with nothing new on chain books nothing and writes nothing.

        One read finds what differs; then at most DEPOSITS_SYNC_PASSES_MAX writes of at most
        DEPOSITS_SYNC_BATCH_MAX deposits each book it (`more`: some is left for the next call).
        Each write re-reads its deposits' rows under the write lock, so two syncers racing
        book each change once."""
        chain, network = adapter.chain, adapter.network
        seen = sorted(adapter.deposits(), key=lambda d: (d.block_height, d.deposit_id, d.epoch))
        report = SyncReport()
        with self.store.reading() as conn:
            todo = self._differing(conn, chain, network, seen, report)
        size = limits.DEPOSITS_SYNC_BATCH_MAX
        done = 0
        for _ in range(limits.DEPOSITS_SYNC_PASSES_MAX):
            if done >= len(todo):
                break
            chunk = todo[done:done + size]
            done += len(chunk)
            self.store.write(actor, "deposit.sync", lambda tx, chunk=chunk: self._write_batch(tx, chain, network, chunk, report))
        report.more = done < len(todo)
        if report.total:
            log.info("deposits_synced", chain=chain, pending=report.pending, credited=report.credited, voided=report.voided,
                     flagged=report.flagged, more=report.more)
        return report

    def _customer_deposits(self, conn, chain: str, seen: list[Deposit], report: SyncReport | None):
        """The deposits that are customer credits, with their addresses. Not credits: payments
        to addresses not issued here, assets without a ledger, and our own movements (a gas
        top-up pays a deposit address)."""
        addrs = self._addresses_in(conn, chain, {d.address for d in seen})
        assets = {r.asset for r in conn.execute(select(ledgers.c.asset))}
        ours_txids = self._own_movements(conn, {d.txid for d in seen})
        out = []
        for d in seen:
            a = addrs.get(d.address)
            if a is None or d.asset not in assets or family_of_safe(d.asset) != a.family or d.txid in ours_txids:
                if report is not None:
                    report.skipped += 1
                continue
            out.append((d, a))
        return out

    def _differing(self, conn, chain: str, network: str, seen: list[Deposit], report: SyncReport) -> list[Deposit]:
        credits = self._customer_deposits(conn, chain, seen, report)
        ours = self._rows_in(conn, chain, network, {d.deposit_id for d, _ in credits})
        return [d for d, _ in credits if _differs(d, ours.get(d.deposit_id, []))]

    def _write_batch(self, tx: WriteTx, chain: str, network: str, chunk: list[Deposit], report: SyncReport):
        body: dict = {"chain": chain, "network": network, "deposits": []}
        ours = self._rows_in(tx.conn, chain, network, {d.deposit_id for d in chunk})
        b = _Booking(tx, body, report)
        for d, a in self._customer_deposits(tx.conn, chain, chunk, None):
            self._book(b, d, a, ours)
        if not b.events and not body["deposits"]:
            return None, None
        if b.new_rows:
            tx.conn.execute(deposits.insert(), b.new_rows)
        results = self.ledger.apply_transfers(tx, b.events, body)
        bad = [(e.id, r.value) for e, r in zip(b.events, results) if r not in (TransferResult.ok, TransferResult.exists)]
        if bad:
            raise LedgerError(TransferResult(bad[0][1]), f"deposit sync {chain}: {bad}")
        webhooks.emit_many(tx.conn, [(client_id or SYSTEM_OWNER, t, data) for client_id, t, data in b.outbox])
        return None, body

    def _addresses_in(self, conn, chain: str, wanted: set[str]) -> dict[str, DepositAddress]:
        out = {}
        items = sorted(wanted)
        for i in range(0, len(items), limits.LEDGER_QUERY_IDS_MAX):
            for r in conn.execute(select(deposit_addresses).where(and_(
                    deposit_addresses.c.chain == chain, deposit_addresses.c.address.in_(items[i:i + limits.LEDGER_QUERY_IDS_MAX])))):
                out[r.address] = _address(r)
        return out

    def _own_movements(self, conn, txids: set[str]) -> set[str]:
        wt = withdrawals_table
        out: set[str] = set()
        items = sorted(txids)
        for i in range(0, len(items), limits.LEDGER_QUERY_IDS_MAX):
            out.update(r.txid for r in conn.execute(select(wt.c.txid).where(and_(
                wt.c.kind.in_(INTERNAL_KINDS), wt.c.txid.in_(items[i:i + limits.LEDGER_QUERY_IDS_MAX])))))
        return out

    def _rows_in(self, conn, chain: str, network: str, wanted: set[str]) -> dict[str, list]:
        out: dict[str, list] = {}
        items = sorted(wanted)
        for i in range(0, len(items), limits.LEDGER_QUERY_IDS_MAX):
            for r in conn.execute(select(deposits).where(and_(
                    deposits.c.chain == chain, deposits.c.network == network,
                    deposits.c.chain_deposit_id.in_(items[i:i + limits.LEDGER_QUERY_IDS_MAX])))):
                out.setdefault(r.chain_deposit_id, []).append(_record(r))
        return out

    def _book(self, b: "_Booking", d: Deposit, a: DepositAddress, ours: dict) -> None:
        rows = ours.get(d.deposit_id, [])
        # An earlier epoch still pending whose void we never booked (the adapter saw the reorg
        # and the deposit mined again before this sync): void it first.
        for old in rows:
            if old.epoch < d.epoch and old.status == DEPOSIT_PENDING:
                self._void(b, old, a)
        mine = next((r for r in rows if r.epoch == d.epoch), None)
        if mine is None:
            if d.status in (DEPOSIT_PENDING, DEPOSIT_CREDITED):
                self._first_sight(b, d, a)
            return  # voided / flagged before we ever saw it: nothing was booked, nothing to undo
        if d.status == DEPOSIT_CREDITED and mine.status == DEPOSIT_PENDING:
            self._credit(b, mine, a)
            b.tx.conn.execute(deposits.update().where(and_(deposits.c.id == mine.id, deposits.c.status == DEPOSIT_PENDING))
                              .values(status=DEPOSIT_CREDITED, updated_at_ns=b.tx.next_timestamp_ns()))
        elif d.status in (DEPOSIT_VOIDED, DEPOSIT_REORGED_AFTER_CREDIT) and mine.status == DEPOSIT_PENDING:
            self._void(b, mine, a)
        elif d.status == DEPOSIT_REORGED_AFTER_CREDIT and mine.status == DEPOSIT_CREDITED:
            self._flag(b, mine, a)

    def _accounts(self, b: "_Booking", sub_id: str, asset: str, vault_id: str) -> tuple[int, int, int]:
        key = (sub_id, asset, vault_id)
        if key not in b.accounts:
            cust = self.customers._ensure_account(b.tx, sub_id, asset, AccountKind.CUSTOMER.value, b.body)
            clearing = self.customers._ensure_account(b.tx, SYSTEM_OWNER, asset, AccountKind.DEPOSIT_CLEARING.value, b.body)
            wallet = deposit_book_account(self.ledger, b.tx, vault_id, asset, b.body)
            b.accounts[key] = (cust, clearing, wallet)
        return b.accounts[key]

    def _set(self, tx: WriteTx, rec: DepositRecord, **values) -> DepositRecord:
        now = tx.next_timestamp_ns()
        res = tx.conn.execute(deposits.update().where(and_(deposits.c.id == rec.id, deposits.c.status == rec.status))
                              .values(updated_at_ns=now, **values))
        assert res.rowcount == 1, f"deposit {rec.id} moved under a serialised write"
        return dataclasses.replace(rec, updated_at_ns=now, **values)

    def _first_sight(self, b: "_Booking", d: Deposit, a: DepositAddress) -> None:
        """A new deposit: its pending credit; posted in the same write when already at depth.
        Rows are inserted together at the end of the batch."""
        did = deposit_record_id(d.chain, d.network, d.deposit_id, d.epoch)
        cust, clearing, _ = self._accounts(b, a.sub_account_id, d.asset, a.vault_id)
        assert type(d.amount) is int and d.amount > 0, f"deposit {d.deposit_id} amount {d.amount!r}"
        b.events.append(TransferCreate(did, clearing, cust, d.amount, d.asset, CODE_DEPOSIT, TransferFlags.PENDING,
                                       user_data=d.txid[:limits.LEDGER_USER_DATA_CHARS_MAX]))
        now = b.tx.next_timestamp_ns()
        rec = DepositRecord(did, 0, d.chain, d.network, d.deposit_id, d.epoch, d.asset, d.txid, d.address, a.id,
                            a.sub_account_id, a.vault_id, d.amount, d.block_height, d.block_hash, DEPOSIT_PENDING, None, None,
                            now, now)
        self._note(b, rec, a, "deposit.pending")
        b.report.pending += 1
        if d.status == DEPOSIT_CREDITED:
            self._credit(b, rec, a)
            rec = dataclasses.replace(rec, status=DEPOSIT_CREDITED)
        b.new_rows.append({f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name != "seq"})

    def _credit(self, b: "_Booking", rec: DepositRecord, a: DepositAddress) -> None:
        _, clearing, wallet = self._accounts(b, rec.sub_account_id, rec.asset, rec.vault_id)
        b.events.append(TransferCreate(f"{rec.id}:post", pending_id=rec.id, flags=TransferFlags.POST_PENDING))
        b.events.append(TransferCreate(f"{rec.id}:in", wallet, clearing, rec.amount, rec.asset, CODE_DEPOSIT,
                                       user_data=rec.txid[:limits.LEDGER_USER_DATA_CHARS_MAX]))
        self._note(b, dataclasses.replace(rec, status=DEPOSIT_CREDITED), a, "deposit.credited")
        b.report.credited += 1

    def _void(self, b: "_Booking", rec: DepositRecord, a: DepositAddress) -> None:
        b.events.append(TransferCreate(f"{rec.id}:void", pending_id=rec.id, flags=TransferFlags.VOID_PENDING))
        rec = self._set(b.tx, rec, status=DEPOSIT_VOIDED)
        self._note(b, rec, a, "deposit.voided")
        b.report.voided += 1

    def _flag(self, b: "_Booking", rec: DepositRecord, a: DepositAddress) -> None:
        # Never debit the customer here: they may have spent it. Staff decide; the journal,
        # the flagged queue and the reconciliation (books above chain) all show it.
        rec = self._set(b.tx, rec, status=DEPOSIT_REORGED_AFTER_CREDIT, review=REVIEW_REVERSAL_NEEDED)
        log.error("deposit_reorged_after_credit", deposit=rec.id, sub_account=rec.sub_account_id, asset=rec.asset,
                  amount=str(rec.amount), txid=rec.txid)
        self._note(b, rec, a, "deposit.reorged")
        b.report.flagged += 1

    @staticmethod
    def _note(b: "_Booking", rec: DepositRecord, a: DepositAddress, event_type: str) -> None:
        data = rec.public()
        b.outbox.append((a.client_id, event_type, data))
        b.body["deposits"].append({"event": event_type, **data})
        b.report.changed.append(rec.id)


@dataclass
class _Booking:
    """What one sync write collects: the ledger events, new deposit rows, outbox events."""

    tx: WriteTx
    body: dict
    report: SyncReport
    events: list = field(default_factory=list)
    outbox: list = field(default_factory=list)
    new_rows: list = field(default_factory=list)
    accounts: dict = field(default_factory=dict)


def _differs(d: Deposit, rows: list[DepositRecord]) -> bool:
    """Whether the ledger disagrees with the adapter about this deposit (what `_book` changes)."""
    if any(r.epoch < d.epoch and r.status == DEPOSIT_PENDING for r in rows):
        return True
    mine = next((r for r in rows if r.epoch == d.epoch), None)
    if mine is None:
        return d.status in (DEPOSIT_PENDING, DEPOSIT_CREDITED)
    if mine.status == DEPOSIT_PENDING:
        return d.status in (DEPOSIT_CREDITED, DEPOSIT_VOIDED, DEPOSIT_REORGED_AFTER_CREDIT)
    return mine.status == DEPOSIT_CREDITED and d.status == DEPOSIT_REORGED_AFTER_CREDIT


def family_of_safe(asset: str) -> str | None:
    try:
        return family_of(asset)[1]
    except DepositError:
        return None



# ---------------------------------------------------------------------- sweeps
# What the composition root gives the sweeper (node/ imports no adapter):
#   sweepable(address, asset) -> int: what a sweep of everything of `asset` at the deposit
#       address would pay to the hot wallet after its own fee (bitcoin: the address's coins minus
#       the fee; ETH: the balance minus the gas; a token: its balance), 0 when nothing;
#   gas_missing(address, asset) -> int: wei the address lacks to pay for sweeping `asset`
#       (0 for BTC and ETH, which pay their fee from the amount);
#   wallet_address(vault_id, asset) -> str: the vault wallet's receive address on that chain.
Sweepable = Callable[[DepositAddress, str], int]
GasMissing = Callable[[DepositAddress, str], int]
WalletAddress = Callable[[str, str], str]

SWEEP_PREFIX = "sweep:"


@dataclass(frozen=True)
class SweepCandidate:
    address: DepositAddress
    asset: str
    credited_unswept: int
    deposit_ids: tuple[str, ...]


class Sweeper:
    """One pass: every deposit address holding credited, unswept funds of an asset at or above
    `minimums[asset]` (assets without a minimum are never swept automatically) gets one sweep
    through the withdrawal pipeline; ERC-20 addresses get their gas top-up first."""

    def __init__(self, deposits: Deposits, withdrawals, *, minimums: dict[str, int], sweepable: Sweepable,
                 gas_missing: GasMissing, wallet_address: WalletAddress):
        for asset, m in minimums.items():
            assert type(m) is int and m > 0, f"sweep minimum of {asset}: {m!r}"
        self.d = deposits
        self.w = withdrawals
        self.minimums = dict(minimums)
        self.sweepable = sweepable
        self.gas_missing = gas_missing
        self.wallet_address = wallet_address

    def candidates(self) -> list[SweepCandidate]:
        """Credited, unswept deposits per (address, asset), oldest address first (bounded)."""
        with self.d.store.reading() as conn:
            rows = conn.execute(select(deposits.c.id, deposits.c.address_id, deposits.c.asset, deposits.c.amount)
                                .where(and_(deposits.c.status == DEPOSIT_CREDITED, deposits.c.swept_by.is_(None)))
                                .order_by(deposits.c.seq).limit(limits.DEPOSITS_PAGE_MAX)).all()
            addrs = {r.id: _address(r) for r in conn.execute(select(deposit_addresses).where(
                deposit_addresses.c.id.in_(sorted({r.address_id for r in rows}) or [""])))}
        grouped: dict[tuple[str, str], list] = {}
        for r in rows:
            grouped.setdefault((r.address_id, r.asset), []).append(r)
        return [SweepCandidate(addrs[aid], asset, sum(int(r.amount) for r in rs), tuple(r.id for r in rs))
                for (aid, asset), rs in grouped.items()]

    def in_flight(self, address_id: str) -> bool:
        """A sweep or gas top-up of this address that has not ended: never two at once (one
        nonce / one set of coins per address)."""
        wt = withdrawals_table
        with self.d.store.reading() as conn:
            return conn.execute(select(wt.c.id).where(and_(
                wt.c.kind == KIND_SWEEP, wt.c.status.in_(ACTIVE),
                wt.c.external_id.like(f"{SWEEP_PREFIX}{address_id}:%")))).first() is not None

    def run_once(self, *, actor: str = "system:sweeper") -> list:
        out = []
        for c in self.candidates():
            if len(out) >= limits.DEPOSITS_SWEEPS_PER_PASS_MAX:
                break
            minimum = self.minimums.get(c.asset)
            if minimum is None or c.credited_unswept < minimum or self.in_flight(c.address.id):
                continue
            a = c.address
            n = self.w.now_ns()
            gas = self.gas_missing(a, c.asset)
            if gas > 0:
                _, x = self.w.submit_internal(KIND_SWEEP, f"{SWEEP_PREFIX}{a.id}:gas:{n}", "ETH", a.address, gas,
                                              vault_id=a.vault_id, source_path=VAULT_WALLET_PATH,
                                              own_destination_paths=(a.path,), actor=actor)
                log.info("sweep_gas_topup", address=a.address, asset=c.asset, wei=gas, withdrawal=x.id)
                out.append(x)
                continue  # the token sweep follows once the top-up completed
            amount = self.sweepable(a, c.asset)
            if amount <= 0:
                continue
            _, x = self.w.submit_internal(KIND_SWEEP, f"{SWEEP_PREFIX}{a.id}:{c.asset}:{n}", c.asset,
                                          self.wallet_address(a.vault_id, c.asset), amount, vault_id=a.vault_id,
                                          source_path=a.path, own_destination_paths=(VAULT_WALLET_PATH,), actor=actor)
            self._mark(c, x.id, actor)
            log.info("sweep_submitted", address=a.address, asset=c.asset, amount=str(amount), withdrawal=x.id)
            out.append(x)
        return out

    def _mark(self, c: SweepCandidate, withdrawal_id: str, actor: str) -> None:
        """The deposits the sweep covers (informational: the ledger books the sweep itself on
        completion). A crash before this mark only makes a later pass consider the address
        again, where the in-flight check or an empty address stops a second sweep."""

        def fn(tx: WriteTx):
            tx.conn.execute(deposits.update().where(and_(deposits.c.id.in_(c.deposit_ids), deposits.c.swept_by.is_(None)))
                            .values(swept_by=withdrawal_id))
            return None, {"sweep": withdrawal_id, "deposits": list(c.deposit_ids)}

        self.d.store.write(actor, "deposit.swept_by", fn)
