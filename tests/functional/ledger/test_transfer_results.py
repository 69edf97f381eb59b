"""Transfer results, one row per case, in precedence order (TigerBeetle's create_transfer).

Each row names the event and the single result it must get. Where two rules apply, the row
says which wins (the earlier one in `TransferResult`). Every failed event must change nothing.
"""

from __future__ import annotations

import pytest

from node.ledger import TransferCreate as T
from node.ledger import TransferFlags as F
from node.ledger import TransferResult as R

L, P, POST, VOID = F.LINKED, F.PENDING, F.POST_PENDING, F.VOID_PENDING
MAX = 10**78 - 1

# (case, event factory (w = World) , expected result). Accounts: w.a (customer, 1,000 sat),
# w.b (customer, 0), w.hot (hot wallet, debit-normal), w.clearing (free), w.eth_c (ETH).
ROWS = [
    ("id empty beats everything", lambda w: T("", 0, 0, 0, "", 0, P | POST), R.id_must_not_be_empty),
    ("id too long", lambda w: T("x" * 65, w.a, w.b, 1, "BTC", 1), R.id_exceeds_maximum_length),
    ("pending and post together", lambda w: T("t", w.a, w.b, 1, "BTC", 1, P | POST), R.flags_are_mutually_exclusive),
    ("post and void together", lambda w: T("t", 0, 0, 0, "", 0, POST | VOID, pending_id="p"), R.flags_are_mutually_exclusive),
    ("debit zero beats credit zero", lambda w: T("t", 0, 0, 1, "BTC", 1), R.debit_account_id_must_not_be_zero),
    ("credit zero", lambda w: T("t", w.a, 0, 1, "BTC", 1), R.credit_account_id_must_not_be_zero),
    ("same account twice", lambda w: T("t", w.a, w.a, 1, "BTC", 1), R.accounts_must_be_different),
    ("pending id on a plain transfer", lambda w: T("t", w.a, w.b, 1, "BTC", 1, pending_id="p"), R.pending_id_must_be_empty),
    ("timeout on a plain transfer", lambda w: T("t", w.a, w.b, 1, "BTC", 1, timeout_s=5), R.timeout_reserved_for_pending_transfer),
    ("timeout too large", lambda w: T("t", w.a, w.b, 1, "BTC", 1, P, timeout_s=2**31), R.overflows_timeout),
    ("user data too long", lambda w: T("t", w.a, w.b, 1, "BTC", 1, user_data="u" * 129), R.user_data_exceeds_maximum_length),
    ("zero amount beats missing ledger", lambda w: T("t", w.a, w.b, 0, "", 1), R.amount_must_not_be_zero),
    ("ledger missing beats code zero", lambda w: T("t", w.a, w.b, 1, "", 0), R.ledger_must_not_be_empty),
    ("code zero", lambda w: T("t", w.a, w.b, 1, "BTC", 0), R.code_must_not_be_zero),
    ("debit account unknown beats credit unknown", lambda w: T("t", 9999, 9998, 1, "BTC", 1), R.debit_account_not_found),
    ("credit account unknown", lambda w: T("t", w.a, 9998, 1, "BTC", 1), R.credit_account_not_found),
    ("accounts on two ledgers", lambda w: T("t", w.a, w.eth_c, 1, "BTC", 1), R.accounts_must_have_the_same_ledger),
    ("transfer ledger differs from accounts", lambda w: T("t", w.a, w.b, 1, "ETH", 1), R.transfer_must_have_the_same_ledger_as_accounts),
    ("exists, other flags", lambda w: T("fund-a", w.hot, w.a, 1000, "BTC", 1, P), R.exists_with_different_flags),
    ("exists, other timeout", lambda w: T("hold", w.a, w.hot, 300, "BTC", 2, P, timeout_s=9), R.exists_with_different_timeout),
    ("exists, other debit account", lambda w: T("fund-a", w.clearing, w.a, 1000, "BTC", 1), R.exists_with_different_debit_account_id),
    ("exists, other credit account", lambda w: T("fund-a", w.hot, w.b, 1000, "BTC", 1), R.exists_with_different_credit_account_id),
    ("exists, other amount", lambda w: T("fund-a", w.hot, w.a, 999, "BTC", 1), R.exists_with_different_amount),
    ("exists, other user data", lambda w: T("fund-a", w.hot, w.a, 1000, "BTC", 1, user_data="x"), R.exists_with_different_user_data),
    ("exists, other code", lambda w: T("fund-a", w.hot, w.a, 1000, "BTC", 2), R.exists_with_different_code),
    ("exists: the same transfer again", lambda w: T("fund-a", w.hot, w.a, 1000, "BTC", 1), R.exists),
    ("exists beats the balance check", lambda w: T("fund-a", w.hot, w.a, 1000, "BTC", 1), R.exists),
    ("overflow of debits", lambda w: T("t", w.hot, w.clearing, MAX, "BTC", 1), R.overflows_debits),
    ("overflow of credits", lambda w: T("t", w.clearing, w.a, MAX, "BTC", 1), R.overflows_credits),
    ("more than the customer has", lambda w: T("t", w.a, w.b, 1001, "BTC", 1), R.exceeds_available_balance),
    ("a hold counts against the balance too", lambda w: T("t", w.a, w.b, 1001, "BTC", 1, P), R.exceeds_available_balance),
    ("a wallet cannot pay more than it holds", lambda w: T("t", w.clearing, w.hot, 1001, "BTC", 1), R.exceeds_debits),
    ("the whole balance is fine", lambda w: T("t", w.a, w.b, 1000, "BTC", 1), R.ok),
    # post / void path
    ("post without pending id", lambda w: T("t", 0, 0, 0, "", 0, POST), R.pending_id_must_not_be_empty),
    ("post of itself", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="t"), R.pending_id_must_be_different),
    ("post with a timeout", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="hold", timeout_s=1), R.timeout_reserved_for_pending_transfer),
    ("post of an unknown transfer", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="nope"), R.pending_transfer_not_found),
    ("post of a posted (not pending) transfer", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="fund-a"), R.pending_transfer_not_pending),
    ("post naming another debit account", lambda w: T("t", w.b, 0, 0, "", 0, POST, pending_id="hold"), R.pending_transfer_has_different_debit_account_id),
    ("post naming another credit account", lambda w: T("t", 0, w.a, 0, "", 0, POST, pending_id="hold"), R.pending_transfer_has_different_credit_account_id),
    ("post naming another ledger", lambda w: T("t", 0, 0, 0, "ETH", 0, POST, pending_id="hold"), R.pending_transfer_has_different_ledger),
    ("post naming another code", lambda w: T("t", 0, 0, 0, "", 7, POST, pending_id="hold"), R.pending_transfer_has_different_code),
    ("post more than held", lambda w: T("t", 0, 0, 301, "", 0, POST, pending_id="hold"), R.exceeds_pending_transfer_amount),
    ("void of a part", lambda w: T("t", 0, 0, 100, "", 0, VOID, pending_id="hold"), R.pending_transfer_has_different_amount),
    ("post a part", lambda w: T("t", 0, 0, 100, "", 0, POST, pending_id="hold"), R.ok),
    ("post all (amount 0)", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="hold"), R.ok),
    ("void all", lambda w: T("t", w.a, w.hot, 300, "BTC", 2, VOID, pending_id="hold"), R.ok),
    ("post again with another id", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="held-posted"), R.pending_transfer_already_posted),
    ("the same post again", lambda w: T("post-1", 0, 0, 0, "", 0, POST, pending_id="held-posted"), R.exists),
    ("the post again for another pending", lambda w: T("post-1", 0, 0, 0, "", 0, POST, pending_id="held-voided"), R.exists_with_different_pending_id),
    ("the post again with another amount", lambda w: T("post-1", 0, 0, 5, "", 0, POST, pending_id="held-posted"), R.exists_with_different_amount),
    ("void after post", lambda w: T("t", 0, 0, 0, "", 0, VOID, pending_id="held-posted"), R.pending_transfer_already_posted),
    ("post after void", lambda w: T("t", 0, 0, 0, "", 0, POST, pending_id="held-voided"), R.pending_transfer_already_voided),
]


def _prepare(w):
    """Three holds from A: `hold` (300, open), `held-posted` (posted by post-1), `held-voided`."""
    r = w.ledger.create_transfers(
        [
            T("hold", w.a, w.hot, 300, "BTC", 2, P),
            T("held-posted", w.a, w.hot, 10, "BTC", 2, P),
            T("post-1", 0, 0, 0, "", 0, POST, pending_id="held-posted"),
            T("held-voided", w.a, w.hot, 10, "BTC", 2, P),
            T("void-1", 0, 0, 0, "", 0, VOID, pending_id="held-voided"),
        ],
        actor="test",
    )
    assert all(x is R.ok for x in r), r


def _snapshot(w):
    ids = [w.a, w.b, w.hot, w.clearing, w.eth_c]
    return w.ledger.balances(ids)


@pytest.mark.parametrize("case,make,expected", ROWS, ids=[r[0] for r in ROWS])
def test_transfer_result(world, case, make, expected):
    w = world
    _prepare(w)
    # The available balance after the holds is 1000 - 300 - 10 = 690 posted... rows above that
    # test the balance use w.a's full 1,000 against the holds only where they say so.
    if case in ("more than the customer has", "a hold counts against the balance too", "the whole balance is fine"):
        # Release the open hold so that A's available balance is exactly 1,000 - 10 (posted).
        assert w.ledger.void_pending("hold", "release", actor="test") is R.ok
        w.ledger.create_transfers([T("top-up", w.hot, w.a, 10, "BTC", 1)], actor="test")
    event = make(w)
    before = _snapshot(w)
    stored_before = w.ledger.lookup_transfers([event.id])
    [result] = w.ledger.create_transfers([event], actor="test")
    assert result is expected, f"{case}: got {result.value}, expected {expected.value}"
    if result is not R.ok:
        assert _snapshot(w) == before, f"{case}: a failed transfer changed balances"
        assert w.ledger.lookup_transfers([event.id]) == stored_before, f"{case}: a failed transfer was stored"
    else:
        assert event.id in w.ledger.lookup_transfers([event.id])


def test_precedence_order_matches_declaration():
    """The precedence table above is listed in the enum's declaration order."""
    order = list(R)
    seen = [expected for _, _, expected in ROWS if expected not in (R.ok, R.exists)]
    positions = [order.index(x) for x in seen]
    # Plain-transfer rows and post/void rows are each in order.
    plain = positions[: positions.index(order.index(R.pending_id_must_not_be_empty))]
    assert plain == sorted(plain), "plain-transfer rows out of precedence order"


def test_batch_results_are_per_event_and_in_order(world):
    w = world
    results = w.ledger.create_transfers(
        [T("x1", w.a, w.b, 100, "BTC", 1), T("x2", w.a, w.b, 10_000, "BTC", 1), T("x1", w.a, w.b, 100, "BTC", 1), T("x3", w.b, w.a, 50, "BTC", 1)],
        actor="test",
    )
    assert results == [R.ok, R.exceeds_available_balance, R.exists, R.ok]
    bal = w.ledger.balances([w.a, w.b])
    assert bal[w.a].posted_credit_balance == 1000 - 100 + 50
    assert bal[w.b].posted_credit_balance == 100 - 50


def test_bad_input_raises_and_changes_nothing(world):
    w = world
    before = _snapshot(w)
    for bad in (
        lambda: T("f", w.a, w.b, 1.5, "BTC", 1),
        lambda: T("f", w.a, w.b, -1, "BTC", 1),
        lambda: T("f", w.a, w.b, True, "BTC", 1),
        lambda: T(7, w.a, w.b, 1, "BTC", 1),
    ):
        with pytest.raises(ValueError):
            w.ledger.create_transfers([T("ok-first", w.a, w.b, 1, "BTC", 1), bad()], actor="test")
    with pytest.raises(ValueError):
        w.ledger.create_transfers([], actor="test")
    with pytest.raises(ValueError):
        w.ledger.create_transfers([T("a", w.a, w.b, 1, "BTC", 1)] * 8191, actor="test")
    with pytest.raises(ValueError):
        w.ledger.create_transfers([T("a", w.a, w.b, 1, "BTC", 1)], actor="")
    assert _snapshot(w) == before
    assert w.ledger.lookup_transfers(["ok-first", "a"]) == {}
