"""The withdrawal state machine over a real store (SQLite file and a PostgreSQL schema): the hold
at submission, voids on every non-completed ending, named refusals that change nothing, policy
versions through approvals. No chain or cluster here (the functional tests have them)."""

from __future__ import annotations

import uuid

import coincurve
import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from node import invariants
from node.customers import CODE_DEPOSIT, Customers
from node.ledger import Ledger, LedgerKind, TransferCreate
from node.ports import Vault
from node.risk import policy_digest
from node.store import open_store
from node.store.models import chain_head
from node.wallets import Wallets
from node.withdrawals import WithdrawalError, Withdrawals, approval_message

KEYS = {a: SigningKey(bytes([i + 1]) * 32) for i, a in enumerate(("a1", "a2", "a3"))}
DEST = "bcrt1qexampledestination000000000000000000"


def policy(version: int, velocity: str = "hold") -> str:
    apr = "\n".join(f'{a} = "{k.verify_key.encode().hex()}"' for a, k in KEYS.items())
    return f"""version = {version}
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
[kyc_tiers.standard.BTC]
per_withdrawal_max = "1000000"
day_max = "5000000"
month_max = "9000000"
[velocity]
exceeded = "{velocity}"
[[vaults]]
id = "hot"
kind = "hot"
bands = [{{ asset = "BTC", amount_max = "101000", approvals_min = 0 }}, {{ asset = "BTC", amount_max = "1100000", approvals_min = 2 }}]
"""
# A BTC band counts the amount plus fee_max (issue 14): no approvals up to 1,000 sat paid out.


@pytest.fixture(params=["sqlite", "postgres"])
def wd(request, tmp_path):
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"u_{uuid.uuid4().hex[:12]}"
    store = open_store(url, schema=schema)
    ledger = Ledger(store)
    w = Withdrawals(ledger, {"bitcoin": "regtest"})
    pub = coincurve.PrivateKey(b"\x07" * 32).public_key.format()
    w.register_vault(Vault("hot", ("peer-1:0", "peer-2:0", "peer-3:0"), 1, pub, b"\x01" * 32), "hot", actor="test")
    w.bootstrap_policy(policy(1), actor="test")
    ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="test")
    hot = Wallets(ledger).create_wallet("hot:BTC", "hot", "BTC", "hot", actor="test")
    c = Customers(ledger)
    c.create_customer("zoe", "Zoe", actor="test")
    w.set_profile("zoe.main", "standard", actor="test")
    acct = c.customer_account("zoe.main", "BTC", actor="test")
    ledger.create_transfers([TransferCreate("dep:1", hot.account_id, acct, 2_000_000, "BTC", CODE_DEPOSIT)], actor="test")
    w.whitelist("zoe.main", "BTC", DEST, actor="test")
    yield w
    violations = invariants.check(store)
    store.dispose()
    if schema:
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        eng.dispose()
    assert not violations, violations


def available(wd) -> int:
    return wd.customers.available("zoe.main", "BTC")


def head(wd):
    with wd.store.reading() as conn:
        return tuple(conn.execute(sa.select(chain_head.c.seq, chain_head.c.hash)).one())


@pytest.mark.parametrize("kwargs, reason", [
    (dict(amount=0), "amount_must_be_positive_integer"),
    (dict(amount=1.5), "amount_must_be_positive_integer"),
    (dict(amount=True), "amount_must_be_positive_integer"),
    (dict(external_id=""), "external_id_invalid"),
    (dict(destination=""), "destination_invalid"),
    (dict(asset="DOGE"), "asset_not_supported"),
    (dict(asset="ETH"), "chain_not_configured"),
    (dict(vault_id="nope"), "vault_unknown"),
    (dict(sub_account_id="nobody.main"), "sub_account_not_found"),
    (dict(amount=2_000_001), "exceeds_available_balance"),
])
def test_bad_submissions_are_refused_by_name_and_change_nothing(wd, kwargs, reason):
    args = dict(sub_account_id="zoe.main", external_id="x", asset="BTC", destination=DEST, amount=500, vault_id="hot")
    args.update(kwargs)
    before = head(wd)
    with pytest.raises(WithdrawalError) as e:
        wd.submit(args.pop("sub_account_id"), args.pop("external_id"), args.pop("asset"), args.pop("destination"),
                  args.pop("amount"), vault_id=args.pop("vault_id"), actor="client")
    assert e.value.reason == reason
    assert head(wd) == before, "a refused submission wrote nothing"
    assert available(wd) == 2_000_000


def test_hold_then_cancel_voids_and_a_second_cancel_is_refused(wd):
    _, w = wd.submit("zoe.main", "c-1", "BTC", DEST, 500, vault_id="hot", actor="client")
    assert available(wd) == 2_000_000 - 500
    assert wd.cancel(w.id, actor="client").status == "cancelled"
    assert available(wd) == 2_000_000
    with pytest.raises(WithdrawalError, match="not_cancellable"):
        wd.cancel(w.id, actor="client")


def test_screening_routes_by_band_and_approvals_release_or_reject(wd):
    _, small = wd.submit("zoe.main", "s", "BTC", DEST, 1000, vault_id="hot", actor="client")
    _, big = wd.submit("zoe.main", "b", "BTC", DEST, 5000, vault_id="hot", actor="client")
    _, big2 = wd.submit("zoe.main", "b2", "BTC", DEST, 6000, vault_id="hot", actor="client")
    assert wd.screen(small).status == "queued"
    assert wd.screen(big).status == "pending_approval"
    assert wd.screen(big2).status == "pending_approval"
    sign = lambda wid, a, d="approve": KEYS[a].sign(approval_message(wd.get(wid).intent, d)).signature  # noqa: E731
    # An approval signature cannot be replayed as a rejection, nor across withdrawals.
    with pytest.raises(WithdrawalError, match="approval_signature_invalid"):
        wd.approve(big.id, "a1", sign(big.id, "a1"), "reject")
    with pytest.raises(WithdrawalError, match="approval_signature_invalid"):
        wd.approve(big.id, "a1", sign(big2.id, "a1"))
    with pytest.raises(WithdrawalError, match="approver_unknown"):
        wd.approve(big.id, "mallory", sign(big.id, "a1"))
    wd.approve(big.id, "a1", sign(big.id, "a1"))
    assert wd.approve(big.id, "a3", sign(big.id, "a3")).status == "queued"
    wd.approve(big2.id, "a1", sign(big2.id, "a1"))
    assert wd.approve(big2.id, "a2", sign(big2.id, "a2", "reject"), "reject").status == "rejected"
    assert available(wd) == 2_000_000 - 1000 - 5000, "the rejected one's hold is voided"


def test_policy_versions_go_through_approvals(wd):
    with pytest.raises(WithdrawalError, match="policy_already_active"):
        wd.bootstrap_policy(policy(2), actor="test")
    with pytest.raises(WithdrawalError, match="policy_version_exists"):
        wd.propose_policy(policy(1), actor="staff")
    text = policy(2, velocity="deny")
    v = wd.propose_policy(text, actor="staff")
    assert wd.policy().version == 1, "a proposal is not active"
    with pytest.raises(WithdrawalError, match="approval_signature_invalid"):
        wd.approve_policy(v, "a1", KEYS["a1"].sign(policy_digest(policy(1))).signature)
    assert wd.approve_policy(v, "a1", KEYS["a1"].sign(policy_digest(text)).signature) == "proposed"
    assert wd.approve_policy(v, "a2", KEYS["a2"].sign(policy_digest(text)).signature) == "active"
    assert (wd.policy().version, wd.policy().velocity_exceeded) == (2, "deny")


COLD_VAULT = """
[[vaults]]
id = "cold"
kind = "cold"
delay_s = 60
bands = [{ asset = "BTC", amount_max = "1000000", approvals_min = 2 }]
"""


def test_a_cold_refill_takes_timed_approvals_and_is_queued_until_its_delay(wd):
    import time

    pub = coincurve.PrivateKey(b"\x08" * 32).public_key.format()
    wd.register_vault(Vault("cold", ("peer-1:0", "peer-2:0", "peer-3:0"), 1, pub, b"\x02" * 32), "cold", actor="test")
    text = policy(2) + COLD_VAULT
    v = wd.propose_policy(text, actor="staff")
    for a in ("a1", "a2"):
        wd.approve_policy(v, a, KEYS[a].sign(policy_digest(text)).signature)
    _, w = wd.submit_internal("refill", "hot|refill:BTC:1", "BTC", DEST, 5000, vault_id="cold",
                              own_destination_paths=((2, 0),), own_destination_vault="hot", actor="system:rebalancer")
    assert (w.intent.kind, w.intent.own_destination_vault, w.intent.own_destination_paths) == ("refill", "hot", ((2, 0),))
    assert wd.screen(w).status == "pending_approval"
    now_ms = time.time_ns() // 1_000_000
    intent = w.intent

    def sign(a, at):
        return KEYS[a].sign(approval_message(intent, "approve", at)).signature

    before = head(wd)
    for name, call, reason in [
        ("untimed", lambda: wd.approve(w.id, "a1", KEYS["a1"].sign(approval_message(intent, "approve")).signature),
         "approval_time_required"),
        ("the claimed time is not the signed one", lambda: wd.approve(w.id, "a1", sign("a1", now_ms), approved_at_ms=now_ms - 1),
         "approval_signature_invalid"),
        ("an hour old", lambda: wd.approve(w.id, "a1", sign("a1", now_ms - 3_600_000), approved_at_ms=now_ms - 3_600_000),
         "approval_time_out_of_range"),
        ("a rejection is not timed", lambda: wd.approve(w.id, "a1", sign("a1", now_ms), "reject", approved_at_ms=now_ms),
         "approval_time_invalid"),
    ]:
        with pytest.raises(WithdrawalError, match=reason):
            call()
    assert head(wd) == before, "refused approvals wrote nothing"
    assert wd.approve(w.id, "a1", sign("a1", now_ms - 5_000), approved_at_ms=now_ms - 5_000).status == "pending_approval"
    queued = wd.approve(w.id, "a2", sign("a2", now_ms), approved_at_ms=now_ms)
    assert (queued.status, queued.sub_status) == ("queued", "approved: 2 of 2; cold delay 60 s")
    assert queued.not_before_ns >= now_ms * 1_000_000 + 60 * 1_000_000_000, "the delay runs from the quorum's signed time"
    approvals = wd.signing_approvals(queued)
    assert sorted((a.approver_id, a.approved_at_ms) for a in approvals) == [("a1", now_ms - 5_000), ("a2", now_ms)]
