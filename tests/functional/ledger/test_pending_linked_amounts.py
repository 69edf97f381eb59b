"""Pending transfers (hold → post | void | expiry), linked chains, and amounts beyond 64 bits."""

from __future__ import annotations

from node.ledger import AccountCreate, AccountFlags
from node.ledger import TransferCreate as T
from node.ledger import TransferFlags as F
from node.ledger import TransferResult as R


def test_hold_then_partial_post_releases_the_rest(world):
    w = world
    assert w.ledger.create_transfers([T("w1", w.a, w.hot, 600, "BTC", 2, F.PENDING)], actor="t") == [R.ok]
    a = w.ledger.balance(w.a)
    assert (a.debits_pending, a.available_credit_balance) == (600, 400)
    # A second hold cannot use what the first one holds.
    assert w.ledger.create_transfers([T("w2", w.a, w.hot, 401, "BTC", 2, F.PENDING)], actor="t") == [R.exceeds_available_balance]
    assert w.ledger.post_pending("w1", "w1-post", amount=550, actor="t") is R.ok
    a = w.ledger.balance(w.a)
    assert (a.debits_pending, a.debits_posted, a.available_credit_balance) == (0, 550, 450)
    assert w.ledger.pending_status("w1") == "posted"
    assert w.ledger.void_pending("w1", "w1-void", actor="t") is R.pending_transfer_already_posted


def test_void_returns_the_whole_hold(world):
    w = world
    w.ledger.create_transfers([T("w1", w.a, w.hot, 1000, "BTC", 2, F.PENDING)], actor="t")
    assert w.ledger.balance(w.a).available_credit_balance == 0
    assert w.ledger.void_pending("w1", "w1-void", actor="t") is R.ok
    assert w.ledger.void_pending("w1", "w1-void", actor="t") is R.exists
    assert w.ledger.balance(w.a).available_credit_balance == 1000
    assert w.ledger.pending_status("w1") == "voided"


def test_timeout_expires_a_hold_once(world, stores):
    w = world
    w.ledger.create_transfers([T("w1", w.a, w.hot, 700, "BTC", 2, F.PENDING, timeout_s=60)], actor="t")
    stores.clock.advance(59)
    assert w.ledger.expire_pending() == 0
    assert w.ledger.balance(w.a).debits_pending == 700
    stores.clock.advance(2)
    # Posting after the deadline fails even before the expiry sweep ran…
    # …and the sweep runs at the start of every write, so this write expires it first.
    assert w.ledger.post_pending("w1", "w1-post", actor="t") is R.pending_transfer_expired
    assert w.ledger.pending_status("w1") == "expired"
    assert w.ledger.balance(w.a).available_credit_balance == 1000
    assert w.ledger.expire_pending() == 0


def test_expiry_by_the_sweep(world, stores):
    w = world
    w.ledger.create_transfers(
        [T(f"h{i}", w.a, w.hot, 10, "BTC", 2, F.PENDING, timeout_s=10 * (i + 1)) for i in range(5)], actor="t"
    )
    stores.clock.advance(25)
    assert w.ledger.expire_pending() == 2  # timeouts 10 s and 20 s are due, 30 s not yet
    assert [w.ledger.pending_status(f"h{i}") for i in range(5)] == ["expired", "expired", "pending", "pending", "pending"]
    assert w.ledger.balance(w.a).debits_pending == 30


def test_linked_chain_is_all_or_nothing(world):
    w = world
    before = w.ledger.balances([w.a, w.b, w.hot])
    results = w.ledger.create_transfers(
        [
            T("c1", w.a, w.b, 400, "BTC", 3, F.LINKED),
            T("c2", w.b, w.a, 100, "BTC", 3, F.LINKED),
            T("c3", w.a, w.b, 800, "BTC", 3),  # 1000 - 400 + 100 = 700 < 800: fails the chain
            T("after", w.a, w.b, 1, "BTC", 3),
        ],
        actor="t",
    )
    assert results == [R.linked_event_failed, R.linked_event_failed, R.exceeds_available_balance, R.ok]
    assert set(w.ledger.lookup_transfers(["c1", "c2", "c3", "after"])) == {"after"}
    after = w.ledger.balances([w.a, w.b, w.hot])
    assert after[w.a].credits_posted - after[w.a].debits_posted == before[w.a].posted_credit_balance - 1


def test_failure_in_the_middle_skips_the_rest_of_the_chain(world):
    w = world
    results = w.ledger.create_transfers(
        [
            T("c1", w.a, w.b, 10, "BTC", 3, F.LINKED),
            T("c2", w.a, w.b, 0, "BTC", 3, F.LINKED),
            T("c3", w.a, w.b, 10, "BTC", 3, F.LINKED),
            T("c4", w.a, w.b, 10, "BTC", 3),
            T("c5", w.a, w.b, 10, "BTC", 3, F.LINKED),
            T("c6", w.a, w.b, 10, "BTC", 3),
        ],
        actor="t",
    )
    assert results == [R.linked_event_failed, R.amount_must_not_be_zero, R.linked_event_failed, R.linked_event_failed, R.ok, R.ok]


def test_open_chain_at_the_end_of_the_batch_fails(world):
    w = world
    results = w.ledger.create_transfers(
        [T("o1", w.a, w.b, 10, "BTC", 3, F.LINKED), T("o2", w.a, w.b, 10, "BTC", 3, F.LINKED)], actor="t"
    )
    assert results == [R.linked_event_failed, R.linked_event_chain_open]
    assert w.ledger.lookup_transfers(["o1", "o2"]) == {}


def test_pending_created_and_posted_in_one_batch_with_a_chain_rollback(world):
    w = world
    results = w.ledger.create_transfers(
        [
            T("p1", w.a, w.hot, 100, "BTC", 2, F.PENDING | F.LINKED),
            T("p1-post", 0, 0, 0, "", 0, F.POST_PENDING | F.LINKED, pending_id="p1"),
            T("bad", w.a, w.a, 1, "BTC", 2),
            T("p2", w.a, w.hot, 100, "BTC", 2, F.PENDING),
            T("p2-post", 0, 0, 40, "", 0, F.POST_PENDING, pending_id="p2"),
        ],
        actor="t",
    )
    assert results == [R.linked_event_failed, R.linked_event_failed, R.accounts_must_be_different, R.ok, R.ok]
    assert w.ledger.pending_status("p1") is None
    assert w.ledger.pending_status("p2") == "posted"
    assert w.ledger.balance(w.a).available_credit_balance == 960


def test_wei_beyond_64_bits_is_stored_exactly(world):
    w = world
    whale = 2**200 + 12345678901234567890123  # far beyond 2**64 and float precision
    results = w.ledger.create_transfers(
        [T("eth-in", w.hot_eth, w.eth_c, whale, "ETH", 1), T("eth-hold", w.eth_c, w.hot_eth, whale - 1, "ETH", 2, F.PENDING)],
        actor="t",
    )
    assert results == [R.ok, R.ok]
    b = w.ledger.balance(w.eth_c)
    assert type(b.credits_posted) is int and b.credits_posted == whale
    assert b.debits_pending == whale - 1 and b.available_credit_balance == 1
    assert w.ledger.lookup_transfers(["eth-in"])["eth-in"].amount == whale
    assert w.ledger.create_transfers([T("eth-2", w.eth_c, w.hot_eth, 2, "ETH", 2)], actor="t") == [R.exceeds_available_balance]


def test_account_results(ledger):
    from node.ledger import AccountResult as A

    ledger.create_ledger("BTC", 8, "crypto", actor="t")
    res = ledger.create_accounts(
        [
            AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner="o1"),
            AccountCreate("BTC", "customer", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, owner="o1"),
            AccountCreate("BTC", "customer", AccountFlags.NONE, owner="o1"),
            AccountCreate("BTC", "customer", AccountFlags(3), owner="o2"),
            AccountCreate("XYZ", "customer", owner="o3"),
            AccountCreate("BTC", "dragon", owner="o3"),
            AccountCreate("", "customer", owner="o3"),
            AccountCreate("BTC", "customer", code=0, owner="o3"),
            AccountCreate("BTC", "hot_wallet", owner="w", id=77),
            AccountCreate("BTC", "hot_wallet", owner="w", id=77),
            AccountCreate("BTC", "cold_wallet", owner="w", id=77),
        ],
        actor="t",
    )
    assert [r for r, _ in res] == [
        A.ok, A.exists, A.exists_with_different_flags, A.flags_are_mutually_exclusive, A.ledger_not_found,
        A.kind_not_known, A.ledger_must_not_be_empty, A.code_must_not_be_zero, A.ok, A.exists, A.exists_with_different_kind,
    ]
    assert res[0][1] == res[1][1] != 0 and res[8][1] == 77


def test_create_ledger_is_idempotent_and_refuses_changes(ledger):
    import pytest

    from node.ledger import LedgerError

    assert ledger.create_ledger("USD", 2, "fiat", actor="t") == "ok"
    assert ledger.create_ledger("USD", 2, "fiat", actor="t") == "exists"
    with pytest.raises(LedgerError, match="exists_with_different_scale"):
        ledger.create_ledger("USD", 3, "fiat", actor="t")
    with pytest.raises(ValueError):
        ledger.create_ledger("USD", 2, "gold", actor="t")
    assert ledger.ledgers() == {"USD": (2, "fiat")}
