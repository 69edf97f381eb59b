"""The invariant checker: `custody ledger check`, run after every test and on a timer.

It reads everything in one snapshot and recomputes, with Python ints:
1. every ledger balances: Σ debits = Σ credits, posted and pending separately;
2. every account's four balances equal the sums of its transfers (nothing lost or invented);
3. balance constraints hold, pending included;
4. each pending transfer resolves at most once, and its recorded status matches the transfers;
5. the journal chain is intact, and replaying it gives exactly the transfers table.
Each violation is a value with a sentence-like `name`; an empty list means all hold.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from node import audit, limits
from node.ledger import AccountFlags, TransferFlags
from node.store import Store
from node.store.models import accounts, journal, pending_transfers, transfers

_FETCH = limits.AUDIT_VERIFY_FETCH_ROWS


@dataclass(frozen=True)
class Violation:
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}"


def check(store: Store) -> list[Violation]:
    with store.reading(snapshot=True) as conn:
        return check_conn(conn)


def check_conn(conn) -> list[Violation]:
    out: list[Violation] = []
    accts = {r.id: r for r in conn.execute(select(accounts))}

    # 1. Every ledger balances.
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for a in accts.values():
        s = sums[a.ledger]
        s[0] += a.debits_pending
        s[1] += a.debits_posted
        s[2] += a.credits_pending
        s[3] += a.credits_posted
    for ledger, (dp, dpo, cp, cpo) in sorted(sums.items()):
        if dpo != cpo:
            out.append(Violation("ledger_posted_does_not_balance", f"ledger {ledger}: debits {dpo} != credits {cpo}"))
        if dp != cp:
            out.append(Violation("ledger_pending_does_not_balance", f"ledger {ledger}: debits {dp} != credits {cp}"))

    # 2 and 4. Recompute balances from the transfers and the pending states.
    status = {r.id: r for r in conn.execute(select(pending_transfers))}
    computed: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    resolvers: dict[str, list[str]] = defaultdict(list)
    pending_amounts: dict[str, tuple[int, int, int]] = {}
    rows = conn.execution_options(yield_per=_FETCH).execute(select(transfers).order_by(transfers.c.timestamp_ns))
    for t in rows:
        if t.debit_account_id not in accts or t.credit_account_id not in accts:
            out.append(Violation("transfer_account_missing", f"transfer {t.id}"))
            continue
        if accts[t.debit_account_id].ledger != t.ledger or accts[t.credit_account_id].ledger != t.ledger:
            out.append(Violation("transfer_crosses_ledgers", f"transfer {t.id}"))
        dr, cr = computed[t.debit_account_id], computed[t.credit_account_id]
        if t.flags & TransferFlags.PENDING:
            pending_amounts[t.id] = (t.debit_account_id, t.credit_account_id, t.amount)
            st = status.get(t.id)
            if st is None:
                out.append(Violation("pending_transfer_without_status", f"transfer {t.id}"))
            elif st.status == "pending":
                dr[0] += t.amount
                cr[2] += t.amount
        elif t.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            resolvers[t.pending_id].append(t.id)
            if t.flags & TransferFlags.POST_PENDING:
                dr[1] += t.amount
                cr[3] += t.amount
                p = pending_amounts.get(t.pending_id)
                if p is not None and t.amount > p[2]:
                    out.append(Violation("post_exceeds_pending_amount", f"transfer {t.id} posts {t.amount} of {p[2]}"))
        else:
            dr[1] += t.amount
            cr[3] += t.amount
    for aid, a in sorted(accts.items()):
        want = computed.get(aid, [0, 0, 0, 0])
        have = [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted]
        if want != have:
            out.append(
                Violation("account_balance_differs_from_transfers", f"account {aid}: stored {have}, transfers sum to {want}")
            )
    for pid, st in sorted(status.items()):
        rs = resolvers.get(pid, [])
        if pid not in pending_amounts:
            out.append(Violation("pending_status_without_transfer", f"pending {pid}"))
        if len(rs) > 1:
            out.append(Violation("pending_transfer_resolved_more_than_once", f"pending {pid} by {rs}"))
        if st.status in ("posted", "voided"):
            if rs != [st.resolved_by]:
                out.append(Violation("pending_resolution_mismatch", f"pending {pid}: status {st.status} by {st.resolved_by}, transfers {rs}"))
        elif rs:
            out.append(Violation("pending_resolution_mismatch", f"pending {pid}: status {st.status} but resolved by {rs}"))
    for pid in resolvers:
        if pid not in status:
            out.append(Violation("resolves_unknown_pending_transfer", f"pending {pid}"))

    # 3. Constraints hold, pending included.
    for aid, a in sorted(accts.items()):
        if a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and a.debits_pending + a.debits_posted > a.credits_posted:
            out.append(Violation("debits_exceed_credits", f"account {aid} ({a.kind}, {a.ledger})"))
        if a.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and a.credits_pending + a.credits_posted > a.debits_posted:
            out.append(Violation("credits_exceed_debits", f"account {aid} ({a.kind}, {a.ledger})"))

    # 5. The journal chain, and the journal replayed against the transfers table.
    broken = audit.verify(conn)
    if broken is not None:
        out.append(Violation("journal_chain_broken", str(broken)))
    else:
        out.extend(_replay(conn))
    return out


def _replay(conn) -> list[Violation]:
    """Every transfer row matches the journal entry that created it, one for one."""
    journaled: dict[str, list] = {}
    rows = conn.execution_options(yield_per=_FETCH).execute(
        select(journal.c.seq, journal.c.body).order_by(journal.c.seq)
    )
    for r in rows:
        body = json.loads(r.body)
        for t in body.get("transfers", ()):
            if t[0] in journaled:
                return [Violation("transfer_journaled_twice", f"transfer {t[0]} again at seq {r.seq}")]
            journaled[t[0]] = t
    out: list[Violation] = []
    seen = 0
    stored = conn.execution_options(yield_per=_FETCH).execute(select(transfers))
    for t in stored:
        seen += 1
        j = journaled.get(t.id)
        row = [t.id, t.debit_account_id, t.credit_account_id, str(t.amount), t.pending_id, t.ledger, t.code, t.flags,
               t.timeout_s, t.user_data, t.timestamp_ns]
        if j is None:
            out.append(Violation("transfer_not_in_journal", f"transfer {t.id}"))
        elif j != row:
            out.append(Violation("transfer_differs_from_journal", f"transfer {t.id}: stored {row}, journal {j}"))
    if seen != len(journaled):
        out.append(Violation("journal_transfer_missing_from_table", f"journal has {len(journaled)} transfers, table {seen}"))
    return out
