"""The deposit rules, without storage: what an observation means for a deposit's latest record
(node/deposits/booking.py applies the answer in one Store.write; tests/unit/deposits/
test_rules.py tables every case)."""

from __future__ import annotations

from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED

# What to do with the latest record of a deposit (its last epoch).
BOOK_NEW = "book_new"  # a pending record for the next epoch
NOTHING = "nothing"
VOID_THEN_NEW = "void_then_new"  # the booked inclusion is gone (met late): void it, then the next epoch
FLAG_AND_MOVE = "flag_and_move"  # a credited inclusion is gone: flag it for staff, note where it is now
MOVE = "move"  # already flagged: note where it is now
VOID = "void"
FLAG = "flag"


def on_seen(latest_status: str | None, latest_block_hash: str | None, block_hash: str) -> str:
    """A payment seen in block `block_hash`, given the deposit's latest record (None: never
    booked)."""
    if latest_status is None or latest_status == DEPOSIT_VOIDED:
        return BOOK_NEW
    if latest_status == DEPOSIT_REORGED_AFTER_CREDIT:
        return NOTHING if latest_block_hash == block_hash else MOVE
    assert latest_status in (DEPOSIT_PENDING, DEPOSIT_CREDITED), latest_status
    if latest_block_hash == block_hash:
        return NOTHING  # already booked at this block
    return VOID_THEN_NEW if latest_status == DEPOSIT_PENDING else FLAG_AND_MOVE


def on_gone(latest_status: str | None) -> str:
    """The deposit's inclusion left the chain (a rollback below it, or the upgrade's "left")."""
    if latest_status == DEPOSIT_PENDING:
        return VOID
    if latest_status == DEPOSIT_CREDITED:
        return FLAG  # never debited silently: staff decide
    return NOTHING


def is_due(tip_height: int, block_height: int, depth: int) -> bool:
    """Whether a deposit in `block_height` has `depth` confirmations at `tip_height` (the block
    itself counts as one)."""
    return tip_height - block_height + 1 >= depth
