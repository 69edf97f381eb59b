"""Customers with sub-accounts and per-asset accounts, wallets per vault and asset, internal
transfers with the fee schedule, fiat deposits and withdrawals, currency conversion with its
rounding booked, and the per-asset snapshot that proof of reserves reads."""

from __future__ import annotations

from fractions import Fraction

import pytest

from node.customers import CODE_DEPOSIT, Customers, Fee
from node.ledger import AccountKind, Ledger, LedgerError
from node.ledger import TransferCreate as T
from node.ledger import TransferResult as R
from node.wallets import Wallets

ACTOR = "staff:alice"


@pytest.fixture
def books(ledger: Ledger):
    for asset, scale, kind in (("BTC", 8, "crypto"), ("USD", 2, "fiat"), ("EUR", 2, "fiat"), ("ETH", 18, "crypto")):
        ledger.create_ledger(asset, scale, kind, actor=ACTOR)
    c, w = Customers(ledger), Wallets(ledger)
    assert c.create_customer("acme", "Acme Exchange Ltd", actor=ACTOR) == "ok"
    assert c.create_customer("acme", "Acme Exchange Ltd", actor=ACTOR) == "exists"
    c.create_customer("globex", "Globex Corp", actor=ACTOR)
    return ledger, c, w


def _deposit(ledger, w, c, sub, amount, tid):
    hot = w.create_wallet("hot-btc", "vault-hot", "BTC", "hot", actor=ACTOR)
    acct = c.customer_account(sub, "BTC", actor=ACTOR)
    assert ledger.create_transfers([T(tid, hot.account_id, acct, amount, "BTC", CODE_DEPOSIT)], actor="watcher") == [R.ok]
    return hot


def test_customers_sub_accounts_and_accounts(books):
    ledger, c, w = books
    assert c.sub_accounts("acme") == ["acme.main"]
    assert c.create_sub_account("acme", "trading", actor=ACTOR) == "acme.trading"
    assert c.create_sub_account("acme", "trading", actor=ACTOR) == "acme.trading"
    assert c.sub_accounts("acme") == ["acme.main", "acme.trading"]
    a1 = c.customer_account("acme.main", "BTC", actor=ACTOR)
    assert c.customer_account("acme.main", "BTC", actor=ACTOR) == a1  # one per asset
    assert c.customer_account("acme.trading", "BTC", actor=ACTOR) != a1
    with pytest.raises(LedgerError, match="exists_with_different_name"):
        c.create_customer("acme", "Someone Else", actor=ACTOR)
    with pytest.raises(LedgerError, match="customer_not_found"):
        c.create_sub_account("nobody", "x", actor=ACTOR)
    with pytest.raises(LedgerError, match="sub_account_not_found"):
        c.customer_account("acme.nope", "BTC", actor=ACTOR)
    with pytest.raises(LedgerError, match="ledger_not_found"):
        c.customer_account("acme.main", "DOGE", actor=ACTOR)
    with pytest.raises(ValueError):
        c.create_customer("bad id with spaces", "x", actor=ACTOR)


def test_wallets_per_vault_and_asset(books):
    ledger, c, w = books
    hot = w.create_wallet("hot-btc", "vault-hot", "BTC", "hot", actor=ACTOR)
    assert w.create_wallet("hot-btc", "vault-hot", "BTC", "hot", actor=ACTOR) == hot
    cold = w.create_wallet("cold-btc", "vault-cold", "BTC", "cold", actor=ACTOR)
    dep = w.create_wallet("dep-btc-0", "vault-hot", "BTC", "deposit", address="bcrt1qexample0", actor=ACTOR)
    assert [x.id for x in w.wallets(vault_id="vault-hot")] == ["dep-btc-0", "hot-btc"]
    assert w.by_address("bcrt1qexample0") == dep
    with pytest.raises(LedgerError, match="address_belongs_to_another_wallet"):
        w.create_wallet("dep-btc-1", "vault-hot", "BTC", "deposit", address="bcrt1qexample0", actor=ACTOR)
    with pytest.raises(LedgerError, match="wallet_exists_with_different_fields"):
        w.create_wallet("hot-btc", "vault-hot", "ETH", "hot", actor=ACTOR)
    # Sweep hot → cold moves book holdings; a wallet cannot send more than it holds.
    _deposit(ledger, w, c, "acme.main", 10_000, "dep-1")
    assert ledger.create_transfers([T("sweep-1", cold.account_id, hot.account_id, 6_000, "BTC", 8)], actor="rebalancer") == [R.ok]
    assert ledger.create_transfers([T("sweep-2", cold.account_id, hot.account_id, 4_001, "BTC", 8)], actor="rebalancer") == [R.exceeds_debits]
    assert w.holdings("BTC") == {"hot": 4_000, "cold": 6_000, "deposit": 0}
    rec = w.reconciliation("BTC", on_chain={"hot-btc": 4_000, "cold-btc": 5_999})
    assert rec["customer_liabilities"] == "10000" and rec["covered_in_books"] is True
    assert rec["covered_on_chain"] is False  # one satoshi short on chain: the report says so


def test_internal_transfer_with_fee_is_all_or_nothing(books):
    ledger, c, w = books
    _deposit(ledger, w, c, "acme.main", 100_000, "dep-1")
    c.set_fee("internal_transfer", "BTC", Fee(fixed=100, rate_ppm=2_500, minimum=150, maximum=1_000), actor=ACTOR)
    # 40,000 × 0.25% = 100, + 100 fixed = 200
    r = c.internal_transfer("it-1", "acme.main", "globex.main", "BTC", 40_000, actor="api:acme")
    assert r.ok and r.fee == 200 and r.results == [R.ok, R.ok]
    assert c.balances("acme.main") == {"BTC": 100_000 - 40_200}
    assert c.balances("globex.main") == {"BTC": 40_000}
    rev = c.system_account("BTC", AccountKind.FEE_REVENUE, actor=ACTOR)
    assert ledger.balance(rev).posted_credit_balance == 200
    # A retry is `exists` and moves nothing.
    again = c.internal_transfer("it-1", "acme.main", "globex.main", "BTC", 40_000, actor="api:acme")
    assert again.result is R.exists and c.balances("acme.main") == {"BTC": 59_800}
    # The amount fits but amount + fee does not: neither leg happens.
    r = c.internal_transfer("it-2", "acme.main", "globex.main", "BTC", 59_700, actor="api:acme")
    assert r.result is R.exceeds_available_balance
    assert r.results == [R.linked_event_failed, R.exceeds_available_balance]
    assert c.balances("acme.main") == {"BTC": 59_800} and c.balances("globex.main") == {"BTC": 40_000}


def test_fee_schedule_changes_are_audited(books, store):
    from node import audit

    ledger, c, w = books
    c.set_fee("fiat_withdrawal", "USD", Fee(fixed=250), actor="staff:bob")
    c.set_fee("fiat_withdrawal", "USD", Fee(fixed=300), actor="staff:carol")
    with store.reading() as conn:
        e = [x for x in audit.entries(conn, 0, 500) if x.action == "fee.set"]
    assert [x.actor for x in e] == ["staff:bob", "staff:carol"]
    assert e[1].body["before"]["fixed"] == "250" and e[1].body["after"]["fixed"] == "300"
    assert c.fee("fiat_withdrawal", "USD") == Fee(fixed=300)


def test_fiat_deposit_and_withdrawal_are_recorded(books, store):
    import sqlalchemy as sa

    ledger, c, w = books
    assert c.fiat_deposit("fd-1", "acme.main", "USD", 500_00, "SEPA-REF-1", actor="ops:bank-feed").ok
    c.set_fee("fiat_withdrawal", "USD", Fee(fixed=25), actor=ACTOR)
    r = c.fiat_withdrawal("fw-1", "acme.main", "USD", 100_00, "SEPA-OUT-1", actor="api:acme")
    assert r.ok and r.fee == 25
    assert c.balances("acme.main") == {"USD": 500_00 - 100_00 - 25}
    bank = c.system_account("USD", AccountKind.FIAT_BANK, actor=ACTOR)
    assert ledger.balance(bank).posted_debit_balance == 400_00
    r = c.fiat_withdrawal("fw-2", "acme.main", "USD", 400_00, "SEPA-OUT-2", actor="api:acme")
    assert r.result is R.exceeds_available_balance
    with store.reading() as conn:
        rows = conn.execute(sa.text("SELECT id, direction, bank_reference FROM fiat_movements ORDER BY id")).all()
    assert [tuple(x) for x in rows] == [("fd-1", "deposit", "SEPA-REF-1"), ("fw-1", "withdrawal", "SEPA-OUT-1")]
    with pytest.raises(LedgerError, match="ledger_is_not_fiat"):
        c.fiat_deposit("fd-2", "acme.main", "BTC", 1, "X", actor=ACTOR)


def test_conversion_books_the_rounding_explicitly(books):
    ledger, c, w = books
    c.fiat_deposit("fd-1", "acme.main", "USD", 1_000_00, "REF", actor=ACTOR)
    r = c.convert("cv-1", "acme.main", "USD", "EUR", 123_45, "0.9234", actor="api:acme")
    assert r.ok
    rec = c.conversion("cv-1")
    exact = Fraction(123_45) * Fraction("0.9234")  # 11399.373 cents
    assert rec["target_amount"] == 11399 and Fraction(rec["target_exact"]) == exact
    assert Fraction(rec["rounding"]) == exact - 11399 and 0 <= Fraction(rec["rounding"]) < 1
    assert c.balances("acme.main") == {"USD": 1_000_00 - 123_45, "EUR": 11399}
    # Different scales: 0.5 BTC-like → ETH at 20.5 (8 → 18 decimal places).
    ledger.create_transfers(
        [T("seed-btc", w.create_wallet("hot-btc", "v", "BTC", "hot", actor=ACTOR).account_id,
           c.customer_account("acme.main", "BTC", actor=ACTOR), 50_000_000, "BTC", 1)],
        actor=ACTOR,
    )
    assert c.convert("cv-2", "acme.main", "BTC", "ETH", 50_000_000, "20.5", actor=ACTOR).ok
    assert c.balances("acme.main")["ETH"] == 10_250_000_000_000_000_000  # 10.25 ETH in wei
    with pytest.raises(LedgerError, match="conversion_rounds_to_zero"):
        c.convert("cv-3", "acme.main", "EUR", "USD", 1, "0.5", actor=ACTOR)
    with pytest.raises(ValueError):
        c.convert("cv-4", "acme.main", "EUR", "USD", 100, "1e3", actor=ACTOR)
    assert c.conversion("cv-3") is None


def test_customer_balances_snapshot_for_reserves(books):
    ledger, c, w = books
    c.create_sub_account("acme", "trading", actor=ACTOR)
    _deposit(ledger, w, c, "acme.main", 7_000, "dep-1")
    acct_t = c.customer_account("acme.trading", "BTC", actor=ACTOR)
    acct_g = c.customer_account("globex.main", "BTC", actor=ACTOR)
    hot = w.wallets(kind="hot")[0].account_id
    ledger.create_transfers([T("dep-2", hot, acct_t, 3_000, "BTC", 1), T("dep-3", hot, acct_g, 5, "BTC", 1)], actor="watcher")
    seq, ts, rows = c.customer_balances_snapshot("BTC")
    assert rows == [("acme", 10_000), ("globex", 5)]
    assert seq > 0 and ts > 0
    ledger.create_transfers([T("dep-4", hot, acct_g, 1, "BTC", 1)], actor="watcher")
    seq2, _, rows2 = c.customer_balances_snapshot("BTC")
    assert seq2 == seq + 1 and rows2 == [("acme", 10_000), ("globex", 6)]
