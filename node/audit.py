"""The journal: append-only and hash-chained, one entry per committed write (who, what, when,
before/after), and its offline verifier (`custody audit verify`).

Entry `seq` hashes `prev_hash`, its own fields and its body:

    hash = sha256(prev_hash ‖ "\\n" ‖ seq ‖ "\\n" ‖ at_ns ‖ "\\n" ‖ actor ‖ "\\n" ‖ action ‖ "\\n" ‖ body)

with the genesis `prev_hash` = 64 zeros and `body` canonical JSON (sorted keys, no spaces,
amounts as decimal strings). The `chain_head` row holds the last seq and hash, so a truncated
journal is caught too. Triggers refuse UPDATE and DELETE on the journal; the chain catches
whoever gets around them (e.g. with the database owner's rights).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select

from node import limits
from node.store.models import chain_head, journal

GENESIS_HASH = "0" * 64


def canonical_json(value) -> str:
    """Deterministic JSON for hashing: sorted keys, no whitespace, ASCII. No floats allowed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(prev_hash: str, seq: int, at_ns: int, actor: str, action: str, body: str) -> str:
    h = hashlib.sha256()
    h.update(f"{prev_hash}\n{seq}\n{at_ns}\n{actor}\n{action}\n".encode())
    h.update(body.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    at_ns: int
    actor: str
    action: str
    body: dict


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link: `seq` of the entry and `reason`, a sentence-like code."""

    seq: int
    reason: str  # seq_not_contiguous | prev_hash_mismatch | hash_mismatch | head_mismatch
    detail: str

    def __str__(self) -> str:
        return f"journal entry seq={self.seq}: {self.reason} ({self.detail})"


def append(conn, head: dict, at_ns: int, actor: str, action: str, body: dict) -> dict:
    """Appends one entry after `head` ({seq, hash}) inside the caller's write transaction;
    returns the new head. Only node.store.Store.write calls this."""
    assert actor and action, "journal entries name who and what"
    seq = head["seq"] + 1
    text = canonical_json(body)
    digest = entry_hash(head["hash"], seq, at_ns, actor, action, text)
    conn.execute(
        journal.insert(),
        {"seq": seq, "at_ns": at_ns, "actor": actor, "action": action, "body": text, "prev_hash": head["hash"], "hash": digest},
    )
    return {"seq": seq, "hash": digest}


def verify(conn) -> ChainBreak | None:
    """Recomputes the whole chain; returns the first broken link, or None when intact."""
    expected_seq = 1
    prev = GENESIS_HASH
    rows = conn.execution_options(yield_per=limits.AUDIT_VERIFY_FETCH_ROWS).execute(
        select(journal).order_by(journal.c.seq)
    )
    for r in rows:
        if r.seq != expected_seq:
            return ChainBreak(r.seq, "seq_not_contiguous", f"expected seq {expected_seq}")
        if r.prev_hash != prev:
            return ChainBreak(r.seq, "prev_hash_mismatch", f"stored {r.prev_hash[:16]}…, previous entry hashes to {prev[:16]}…")
        computed = entry_hash(r.prev_hash, r.seq, r.at_ns, r.actor, r.action, r.body)
        if computed != r.hash:
            return ChainBreak(r.seq, "hash_mismatch", f"stored {r.hash[:16]}…, contents hash to {computed[:16]}…")
        prev = r.hash
        expected_seq += 1
    head = conn.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)).one_or_none()
    last_seq = expected_seq - 1
    if head is None:
        return ChainBreak(last_seq, "head_mismatch", "the chain_head row is missing")
    if head.seq != last_seq or head.hash != prev:
        return ChainBreak(
            min(head.seq, last_seq) + 1 if head.seq != last_seq else last_seq,
            "head_mismatch",
            f"head says seq {head.seq}, journal ends at seq {last_seq}",
        )
    return None


def entries(conn, after_seq: int = 0, limit: int = limits.LEDGER_PAGE_MAX) -> list[JournalEntry]:
    """The audit log, oldest first, a page at a time."""
    if not 1 <= limit <= limits.LEDGER_PAGE_MAX:
        raise ValueError(f"limit must be 1..{limits.LEDGER_PAGE_MAX}")
    rows = conn.execute(select(journal).where(journal.c.seq > after_seq).order_by(journal.c.seq).limit(limit))
    return [JournalEntry(r.seq, r.at_ns, r.actor, r.action, json.loads(r.body)) for r in rows]
