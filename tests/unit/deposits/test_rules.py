"""node/deposits/rules.py: what an observation means for a deposit's latest record, one row per
case (booking.py applies these; test_deposits.py and test_observation_log.py run them through a
real store)."""

from __future__ import annotations

import pytest

from node.deposits import rules
from node.ports import DEPOSIT_CREDITED, DEPOSIT_PENDING, DEPOSIT_REORGED_AFTER_CREDIT, DEPOSIT_VOIDED


@pytest.mark.parametrize("status, booked_at, seen_at, action", [
    (None, None, "h1", rules.BOOK_NEW),  # first sight
    (DEPOSIT_VOIDED, "h1", "h2", rules.BOOK_NEW),  # mined again after a void: the next epoch
    (DEPOSIT_VOIDED, "h1", "h1", rules.BOOK_NEW),  # the very block came back (A -> B -> A)
    (DEPOSIT_PENDING, "h1", "h1", rules.NOTHING),  # already booked here
    (DEPOSIT_CREDITED, "h1", "h1", rules.NOTHING),
    (DEPOSIT_PENDING, "h1", "h2", rules.VOID_THEN_NEW),  # a reorg met late
    (DEPOSIT_CREDITED, "h1", "h2", rules.FLAG_AND_MOVE),  # never silently re-credited or debited
    (DEPOSIT_REORGED_AFTER_CREDIT, "h1", "h2", rules.MOVE),
    (DEPOSIT_REORGED_AFTER_CREDIT, "h2", "h2", rules.NOTHING),
])
def test_seen(status, booked_at, seen_at, action):
    assert rules.on_seen(status, booked_at, seen_at) == action


@pytest.mark.parametrize("status, action", [
    (DEPOSIT_PENDING, rules.VOID),
    (DEPOSIT_CREDITED, rules.FLAG),
    (DEPOSIT_VOIDED, rules.NOTHING),
    (DEPOSIT_REORGED_AFTER_CREDIT, rules.NOTHING),
    (None, rules.NOTHING),  # gone before it was ever booked
])
def test_gone(status, action):
    assert rules.on_gone(status) == action


@pytest.mark.parametrize("tip, height, depth, due", [
    (100, 100, 1, True),  # one confirmation: its own block
    (101, 100, 3, False),
    (102, 100, 3, True),
    (99, 100, 1, False),  # above the tip (a page read before its block): never due
])
def test_is_due(tip, height, depth, due):
    assert rules.is_due(tip, height, depth) is due
