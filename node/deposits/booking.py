"""The deposit state machine: the one place a deposit's status is decided.

Input: a chain's observation log (DepositSource.observations), read after this node's cursor
for that chain. Each batch is one Store.write that books the ledger transfers, the deposit
rows, the webhook events and the new cursor together:

    seen, never booked (or its last epoch voided)  -> pending record, epoch + 1     deposit.pending
    seen, booked at this block                      -> nothing (already booked)
    seen, booked pending at another block           -> void it, new epoch pending   (a reorg we met late)
    seen, booked credited at another block          -> flag it (reorged after credit), now at this block
    rollback to h: pending above h                  -> void                         deposit.voided
    rollback to h: credited above h                 -> flag reversal_needed         deposit.reorged
    left (the upgrade's carried-over statuses)      -> as a rollback, for that deposit
    pending with tip - height + 1 >= depth(asset)   -> post it                      deposit.credited

Confirmations are applied only when the tip read with the page describes the blocks of every
observation booked: the page reached the log's head, or no rollback follows it (a rollback not
yet read can never make a deposit look deeper than it is).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sqlalchemy import and_, select

from node import limits, webhooks
from node.customers import CODE_DEPOSIT, SYSTEM_OWNER
from node.deposits import rules
from node.deposits.records import (REVIEW_REVERSAL_NEEDED, DepositAddress, DepositRecord, SyncReport, _address, _record,
                                   deposit_record_id, family_of_safe)
from node.ledger import AccountKind, LedgerError, TransferCreate, TransferFlags, TransferResult
from node.log import get as get_log
from node.ports import (DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED,
                        OBSERVED_LEFT, OBSERVED_ROLLBACK, OBSERVED_SEEN, DepositSource, Observation, ObservationPage)
from node.store import WriteTx
from node.store.deposit_models import deposit_addresses, deposit_cursors, deposits
from node.store.models import ledgers
from node.store.withdrawal_models import withdrawals as withdrawals_table
from node.wallets import deposit_book_account
from node.withdrawals import INTERNAL_KINDS

log = get_log("node.deposits")


@dataclass(frozen=True)
class Cursor:
    seq: int
    tip_height: int | None


@dataclass
class _Booking:
    """What one sync write collects: the ledger events, outbox events, the accounts it used."""

    tx: WriteTx
    body: dict
    report: SyncReport
    events: list = field(default_factory=list)
    outbox: list = field(default_factory=list)
    accounts: dict = field(default_factory=dict)
    addresses: dict = field(default_factory=dict)  # address id -> DepositAddress
    records: dict = field(default_factory=dict)  # chain deposit id -> its records, oldest epoch first (kept current)
    new_rows: list = field(default_factory=list)  # records to insert (flushed before any read of the table)


class Booking:
    """Mixed into Deposits (node/deposits/core.py): `sync` and the state machine."""

    # ---------------------------------------------------------------- the pass
    def sync(self, adapter: DepositSource, *, actor: str = "system:deposits") -> SyncReport:
        """Books what the chain's observation log holds after this node's cursor, and posts the
        pending deposits that reached their depth. Idempotent: with nothing new it reads the
        cursor, the log's head and the (bounded) due pending deposits, and writes nothing.

        At most DEPOSITS_SYNC_PASSES_MAX writes of at most DEPOSITS_SYNC_BATCH_MAX observations
        each (`more`: some is left for the next call)."""
        chain, network = adapter.chain, adapter.network
        depths = {**dict(getattr(adapter, "confirmations", {}) or {}), **self.confirmations}
        report = SyncReport()
        for _ in range(limits.DEPOSITS_SYNC_PASSES_MAX):
            with self.store.reading() as conn:
                cursor = self._cursor(conn, chain, network)
            report.rows_read += 1
            page = adapter.observations(cursor.seq, limits.DEPOSITS_SYNC_BATCH_MAX)
            report.rows_read += 1 + len(page.items)
            complete = page.complete
            if not page.items:
                if page.tip_height is None:
                    break
                with self.store.reading() as conn:
                    due = self._due(conn, chain, network, page.tip_height, depths, report)
                if not due:
                    break  # nothing new, nothing due: no write (the cursor's tip moves with the next booking)
            due_full = self.store.write(
                actor, "deposit.sync", lambda tx, p=page: self._write_page(tx, chain, network, p, depths, report))
            if complete and not due_full:
                break
        else:
            report.more = True  # the log or the due deposits go on: the next call carries on
        if report.total:
            log.info("deposits_synced", chain=chain, pending=report.pending, credited=report.credited, voided=report.voided,
                     flagged=report.flagged, more=report.more)
        return report

    def cursor(self, chain: str, network: str) -> Cursor:
        with self.store.reading() as conn:
            return self._cursor(conn, chain, network)

    @staticmethod
    def _cursor(conn, chain: str, network: str) -> Cursor:
        r = conn.execute(select(deposit_cursors.c.seq, deposit_cursors.c.tip_height).where(and_(
            deposit_cursors.c.chain == chain, deposit_cursors.c.network == network))).first()
        return Cursor(0, None) if r is None else Cursor(int(r.seq), r.tip_height)

    def _due(self, conn, chain: str, network: str, tip_height: int, depths: dict[str, int],
             report: SyncReport) -> list[DepositRecord]:
        """Pending deposits at or past their asset's depth at `tip_height` (an index range over
        the pending ones only, oldest first, bounded)."""
        if not depths:
            return []
        shallowest = min(depths.values())
        rows = conn.execute(select(deposits).where(and_(
            deposits.c.chain == chain, deposits.c.network == network, deposits.c.status == DEPOSIT_PENDING,
            deposits.c.block_height <= tip_height - shallowest + 1)).order_by(deposits.c.block_height, deposits.c.seq)
            .limit(limits.DEPOSITS_SYNC_BATCH_MAX)).all()
        report.rows_read += len(rows)
        out = []
        for r in rows:
            depth = depths.get(r.asset)
            if depth is None:
                log.warning("deposit_depth_not_configured", chain=chain, asset=r.asset, deposit=r.id)
                continue
            if rules.is_due(tip_height, r.block_height, depth):
                out.append(_record(r))
        return out

    def _write_page(self, tx: WriteTx, chain: str, network: str, page: ObservationPage, depths: dict[str, int],
                    report: SyncReport):
        """One batch: the page's observations after the cursor (re-read under the write lock),
        then the confirmations if the page's tip applies to them, then the cursor."""
        cursor = self._cursor(tx.conn, chain, network)  # under the write lock: another syncer may have moved it
        items = [o for o in page.items if o.seq > cursor.seq]
        if cursor.seq > page.last_seq:
            return False, None  # a fresher syncer booked past this page: it confirms too
        body: dict = {"chain": chain, "network": network, "deposits": []}
        b = _Booking(tx, body, report)
        ctx = self._context(tx.conn, chain, [o for o in items if o.kind == OBSERVED_SEEN])
        b.records = self._records_of(tx.conn, chain, network, {o.deposit_id for o in items if o.kind != OBSERVED_ROLLBACK})
        for o in items:
            if o.kind == OBSERVED_SEEN:
                self._on_seen(b, o, ctx)
            elif o.kind == OBSERVED_ROLLBACK:
                self._on_rollback(b, chain, network, o.height)
            else:
                assert o.kind == OBSERVED_LEFT, f"observation kind {o.kind!r}"
                self._on_left(b, chain, network, o)
        self._flush(b)
        consumed = items[-1].seq if items else cursor.seq
        tip = cursor.tip_height
        due_full = False
        stale = consumed == cursor.seq and cursor.tip_height is not None and (page.tip_height or -1) < cursor.tip_height
        if page.tip_applies and page.tip_height is not None and not stale:
            # (stale: another syncer already confirmed at a later tip of this same log head)
            tip = page.tip_height
            due = self._due(tx.conn, chain, network, tip, depths, report)
            due_full = len(due) >= limits.DEPOSITS_SYNC_BATCH_MAX
            self._credit_many(b, due)
        report.observations += len(items)
        if not b.events and not body["deposits"] and consumed == cursor.seq and tip == cursor.tip_height:
            return False, None
        self._move_cursor(tx, chain, network, consumed, tip)
        body["cursor"] = {"seq": consumed, "tip_height": tip}
        results = []
        step = limits.LEDGER_BATCH_EVENTS_MAX
        for i in range(0, len(b.events), step):
            results += self.ledger.apply_transfers(tx, b.events[i:i + step], body)
        bad = [(e.id, r.value) for e, r in zip(b.events, results) if r not in (TransferResult.ok, TransferResult.exists)]
        if bad:
            raise LedgerError(TransferResult(bad[0][1]), f"deposit sync {chain}: {bad}")
        webhooks.emit_many(tx.conn, [(client_id or SYSTEM_OWNER, t, data) for client_id, t, data in b.outbox])
        return due_full, body

    @staticmethod
    def _move_cursor(tx: WriteTx, chain: str, network: str, seq: int, tip_height: int | None) -> None:
        values = {"seq": seq, "tip_height": tip_height, "updated_at_ns": tx.now_ns()}
        done = tx.conn.execute(deposit_cursors.update().where(and_(
            deposit_cursors.c.chain == chain, deposit_cursors.c.network == network)).values(**values)).rowcount
        if not done:
            tx.conn.execute(deposit_cursors.insert().values(chain=chain, network=network, **values))

    # ---------------------------------------------------------------- what is a customer credit
    def _context(self, conn, chain: str, seen: list[Observation]) -> dict:
        """For a page's payments: our deposit addresses among them, the assets with a ledger,
        and the txids that are our own movements (a gas top-up pays a deposit address)."""
        return {"addresses": self._addresses_in(conn, chain, {o.address for o in seen}),
                "assets": {r.asset for r in conn.execute(select(ledgers.c.asset))},
                "ours": self._own_movements(conn, {o.txid for o in seen})}

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

    def _address_by_id(self, b: _Booking, address_id: str) -> DepositAddress:
        if address_id not in b.addresses:
            r = b.tx.conn.execute(select(deposit_addresses).where(deposit_addresses.c.id == address_id)).one()
            b.addresses[address_id] = _address(r)
        return b.addresses[address_id]

    @staticmethod
    def _records_of(conn, chain: str, network: str, wanted: set[str]) -> dict[str, list[DepositRecord]]:
        """Every record of these chain deposits, oldest epoch first (one per time it entered the
        chain): one query per chunk, on the unique index."""
        out: dict[str, list[DepositRecord]] = {}
        items = sorted(wanted)
        for i in range(0, len(items), limits.LEDGER_QUERY_IDS_MAX):
            for r in conn.execute(select(deposits).where(and_(
                    deposits.c.chain == chain, deposits.c.network == network,
                    deposits.c.chain_deposit_id.in_(items[i:i + limits.LEDGER_QUERY_IDS_MAX]))).order_by(deposits.c.epoch)):
                out.setdefault(r.chain_deposit_id, []).append(_record(r))
        return out

    @staticmethod
    def _flush(b: _Booking) -> None:
        if b.new_rows:
            b.tx.conn.execute(deposits.insert(), b.new_rows)
            b.new_rows = []

    def _keep(self, b: _Booking, rec: DepositRecord) -> DepositRecord:
        """Records `rec` as the current version of its epoch in the page's view."""
        epochs = b.records.setdefault(rec.chain_deposit_id, [])
        for i, old in enumerate(epochs):
            if old.id == rec.id:
                epochs[i] = rec
                return rec
        epochs.append(rec)
        return rec

    # ---------------------------------------------------------------- the state machine
    def _on_seen(self, b: _Booking, o: Observation, ctx: dict) -> None:
        a = ctx["addresses"].get(o.address)
        if a is None or o.asset not in ctx["assets"] or family_of_safe(o.asset) != a.family or o.txid in ctx["ours"]:
            b.report.skipped += 1
            return
        records = b.records.get(o.deposit_id, [])
        latest = records[-1] if records else None
        action = rules.on_seen(latest and latest.status, latest and latest.block_hash, o.block_hash)
        if action == rules.BOOK_NEW:
            self._first_sight(b, o, a, 1 if latest is None else latest.epoch + 1)
        elif action == rules.VOID_THEN_NEW:
            # Booked in a block whose rollback we never read (only the upgrade's log does this).
            self._void(b, latest)
            self._first_sight(b, o, a, latest.epoch + 1)
        elif action == rules.FLAG_AND_MOVE:
            latest = self._flag(b, latest)
            self._set_in(b, latest, block_height=o.height, block_hash=o.block_hash)
        elif action == rules.MOVE:
            # Mined again after a reorg took it out: staff have the flag; keep where it lives now.
            self._set_in(b, latest, block_height=o.height, block_hash=o.block_hash)
            log.warning("deposit_reincluded_after_flag", deposit=latest.id, height=o.height)
        else:
            assert action == rules.NOTHING, action

    def _on_rollback(self, b: _Booking, chain: str, network: str, height: int) -> None:
        self._flush(b)
        rows = b.tx.conn.execute(select(deposits).where(and_(
            deposits.c.chain == chain, deposits.c.network == network, deposits.c.block_height > height,
            deposits.c.status.in_((DEPOSIT_PENDING, DEPOSIT_CREDITED)))).order_by(deposits.c.seq)).all()
        b.report.rows_read += len(rows)
        for r in rows:
            current = [x for x in b.records.get(r.chain_deposit_id, []) if x.id == r.id]
            rec = current[0] if current else _record(r)
            self._gone(b, rec)

    def _on_left(self, b: _Booking, chain: str, network: str, o: Observation) -> None:
        records = b.records.get(o.deposit_id, [])
        latest = records[-1] if records else None
        if latest is not None:  # (left before we ever booked it: nothing to undo)
            self._gone(b, latest)

    def _gone(self, b: _Booking, rec: DepositRecord) -> None:
        action = rules.on_gone(rec.status)
        if action == rules.VOID:
            self._void(b, rec)
        elif action == rules.FLAG:
            self._flag(b, rec)

    # ---------------------------------------------------------------- bookings
    def _accounts(self, b: _Booking, sub_id: str, asset: str, vault_id: str) -> tuple[int, int, int]:
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

    def _set_in(self, b: _Booking, rec: DepositRecord, **values) -> DepositRecord:
        """`_set` within a sync write, keeping the page's view current (the row is flushed first)."""
        self._flush(b)
        return self._keep(b, self._set(b.tx, rec, **values))

    def _first_sight(self, b: _Booking, o: Observation, a: DepositAddress, epoch: int) -> None:
        """A new deposit (or a new epoch of one): its pending credit; posted in the same write
        when already at depth (the confirmations at the end of the batch)."""
        did = deposit_record_id(o.chain, o.network, o.deposit_id, epoch)
        cust, clearing, _ = self._accounts(b, a.sub_account_id, o.asset, a.vault_id)
        assert type(o.amount) is int and o.amount > 0, f"deposit {o.deposit_id} amount {o.amount!r}"
        b.events.append(TransferCreate(did, clearing, cust, o.amount, o.asset, CODE_DEPOSIT, TransferFlags.PENDING,
                                       user_data=o.txid[:limits.LEDGER_USER_DATA_CHARS_MAX]))
        now = b.tx.next_timestamp_ns()
        rec = DepositRecord(did, 0, o.chain, o.network, o.deposit_id, epoch, o.asset, o.txid, o.address, a.id,
                            a.sub_account_id, a.vault_id, o.amount, o.height, o.block_hash, DEPOSIT_PENDING, None, None,
                            now, now)
        b.new_rows.append({f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name != "seq"})
        self._keep(b, rec)
        b.addresses[a.id] = a
        self._note(b, rec, "deposit.pending")
        b.report.pending += 1

    def _credit_many(self, b: _Booking, due: list[DepositRecord]) -> None:
        """Posts the pending deposits at depth: their transfers, one UPDATE per chunk."""
        if not due:
            return
        now = b.tx.next_timestamp_ns()
        ids = [rec.id for rec in due]
        for i in range(0, len(ids), limits.LEDGER_QUERY_IDS_MAX):
            chunk = ids[i:i + limits.LEDGER_QUERY_IDS_MAX]
            res = b.tx.conn.execute(deposits.update().where(and_(deposits.c.id.in_(chunk), deposits.c.status == DEPOSIT_PENDING))
                                    .values(status=DEPOSIT_CREDITED, updated_at_ns=now))
            assert res.rowcount == len(chunk), "a due deposit moved under a serialised write"
        for rec in due:
            _, clearing, wallet = self._accounts(b, rec.sub_account_id, rec.asset, rec.vault_id)
            b.events.append(TransferCreate(f"{rec.id}:post", pending_id=rec.id, flags=TransferFlags.POST_PENDING))
            b.events.append(TransferCreate(f"{rec.id}:in", wallet, clearing, rec.amount, rec.asset, CODE_DEPOSIT,
                                           user_data=rec.txid[:limits.LEDGER_USER_DATA_CHARS_MAX]))
            self._note(b, dataclasses.replace(rec, status=DEPOSIT_CREDITED, updated_at_ns=now), "deposit.credited")
            b.report.credited += 1

    def _void(self, b: _Booking, rec: DepositRecord) -> None:
        b.events.append(TransferCreate(f"{rec.id}:void", pending_id=rec.id, flags=TransferFlags.VOID_PENDING))
        rec = self._set_in(b, rec, status=DEPOSIT_VOIDED)
        self._note(b, rec, "deposit.voided")
        b.report.voided += 1

    def _flag(self, b: _Booking, rec: DepositRecord) -> DepositRecord:
        # Never debit the customer here: they may have spent it. Staff decide; the journal,
        # the flagged queue and the reconciliation (books above chain) all show it.
        rec = self._set_in(b, rec, status=DEPOSIT_REORGED_AFTER_CREDIT, review=REVIEW_REVERSAL_NEEDED)
        log.error("deposit_reorged_after_credit", deposit=rec.id, sub_account=rec.sub_account_id, asset=rec.asset,
                  amount=str(rec.amount), txid=rec.txid)
        self._note(b, rec, "deposit.reorged")
        b.report.flagged += 1
        return rec

    def _note(self, b: _Booking, rec: DepositRecord, event_type: str) -> None:
        a = self._address_by_id(b, rec.address_id)
        data = rec.public()
        b.outbox.append((a.client_id, event_type, data))
        b.body["deposits"].append({"event": event_type, **data})
        b.report.changed.append(rec.id)
