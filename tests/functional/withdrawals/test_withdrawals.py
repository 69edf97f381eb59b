"""Withdrawals end to end, on SQLite and on PostgreSQL: request -> risk -> approvals -> the real
signer cluster -> btcd / Anvil -> completed, with the ledger checked after each story."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from node.withdrawals import WithdrawalError, approval_message
from tests.functional.withdrawals.conftest import BTC, ETH, ROOT

pytestmark = pytest.mark.functional


def assert_eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def balance(node, sub, asset):
    return node.customers.available(sub, asset)


def approve(node, wid, approver, decision="approve"):
    key = node.shared.approver_keys[approver]
    w = node.withdrawals.get(wid)
    return node.withdrawals.approve(wid, approver, key.sign(approval_message(w.intent, decision)).signature, decision)


def test_btc_below_threshold_is_auto_approved_and_completes_once(node):
    sub = node.customer(f"alice-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = node.shared.btc_destination()
    node.whitelist(sub, "BTC", dest)
    result, w = node.withdrawals.submit(sub, "ext-1", "BTC", dest, 5_000_000, vault_id="hot", actor=f"client:{sub}")
    assert_eq((result, w.status), ("ok", "submitted"), "submit")
    assert_eq(balance(node, sub, "BTC"), BTC - 5_000_000, "available after the hold")
    # A retry with the same external id is `exists`, never a second withdrawal.
    again, w2 = node.withdrawals.submit(sub, "ext-1", "BTC", dest, 5_000_000, vault_id="hot", actor=f"client:{sub}")
    assert_eq((again, w2.id), ("exists", w.id), "retry")
    with pytest.raises(WithdrawalError, match="exists_with_different_amount"):
        node.withdrawals.submit(sub, "ext-1", "BTC", dest, 6_000_000, vault_id="hot", actor=f"client:{sub}")
    done = node.drive(w.id, "completed")
    assert_eq((done.risk["outcome"], node.withdrawals.approvals(w.id)), ("allow", []), "auto-approved: no approver signed")
    assert done.txid and done.fee_paid and 0 < done.fee_paid <= done.fee_max
    paid = node.shared.received_btc(dest)
    assert_eq(paid, [(done.txid, 5_000_000)], "exactly one transaction paid the destination")
    assert_eq(balance(node, sub, "BTC"), BTC - 5_000_000, "available after completion")
    node.check_ledger()


def test_btc_above_threshold_needs_two_approver_signatures(node):
    sub = node.customer(f"bob-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = node.shared.btc_destination()
    node.whitelist(sub, "BTC", dest)
    _, w = node.withdrawals.submit(sub, "big-1", "BTC", dest, 30_000_000, vault_id="hot", actor=f"client:{sub}")
    node.pipeline.run_once()
    w = node.withdrawals.get(w.id)
    assert_eq((w.status, w.sub_status), ("pending_approval", "awaiting_approvals: 0 of 2"), "after screening")
    # A signature by a key that is not the approver's is refused and changes nothing.
    forged = node.shared.approver_keys["approver-2"].sign(approval_message(w.intent, "approve")).signature
    with pytest.raises(WithdrawalError, match="approval_signature_invalid"):
        node.withdrawals.approve(w.id, "approver-1", forged)
    assert_eq(approve(node, w.id, "approver-1").sub_status, "awaiting_approvals: 1 of 2", "one approval")
    with pytest.raises(WithdrawalError, match="already_decided_by_approver"):
        approve(node, w.id, "approver-1")
    node.pipeline.run_once()
    assert_eq(node.withdrawals.get(w.id).status, "pending_approval", "one approval does not release it")
    # The second approver signs on their own machine with `custody approve` (a real process).
    config = node.workdir / "approve.toml"
    schema = f'database_schema = "{node.schema}"\n' if node.schema else ""
    config.write_text(f'environment = "test"\ndatabase_url = "{node.url}"\n{schema}chain_state_url = "{node.chain_state_url}"\n'
                      f'cluster_file = "unused"\n[confirmations]\nbitcoin = 1\n')
    key_file = node.shared.cluster.info["approvers"]["approver-2"]
    res = subprocess.run([sys.executable, "-m", "api.cli", "approve", "--config", str(config), "--withdrawal", w.id,
                          "--approver-id", "approver-2", "--key-file", key_file], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert_eq(json.loads(res.stdout.strip().splitlines()[-1])["status"], "queued", "two approvals")
    done = node.drive(w.id, "completed")
    assert_eq(node.shared.received_btc(dest), [(done.txid, 30_000_000)], "paid once")
    node.check_ledger()


def test_eth_and_erc20_withdrawals_complete(node):
    s = node.shared
    sub = node.customer(f"carol-{node.kind}")
    node.fund(sub, "ETH", ETH)
    node.fund(sub, s.token_asset, 10**9)
    dest = s.eth_destination()
    node.whitelist(sub, "ETH", dest)
    node.whitelist(sub, s.token_asset, dest)
    _, we = node.withdrawals.submit(sub, "eth-1", "ETH", dest, ETH // 20, vault_id="hot", actor=f"client:{sub}")
    _, wt = node.withdrawals.submit(sub, "tok-1", s.token_asset, dest, 400_000_000, vault_id="hot", actor=f"client:{sub}")
    before_eth = s.w3.eth.get_balance(dest)
    done_e = node.drive(we.id, "completed")
    done_t = node.drive(wt.id, "completed")
    assert_eq(s.w3.eth.get_balance(dest) - before_eth, ETH // 20, "ETH received")
    assert_eq(s.token.functions.balanceOf(dest).call(), 400_000_000, "tokens received")
    for d in (done_e, done_t):
        receipt = s.w3.eth.get_transaction_receipt(d.txid)
        assert_eq((receipt["status"], int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])), (1, d.fee_paid), "fee booked = fee paid")
    assert_eq(balance(node, sub, s.token_asset), 10**9 - 400_000_000, "token balance")
    node.check_ledger()


def test_address_in_time_lock_is_held_then_released_by_review(node):
    sub = node.customer(f"dave-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = node.shared.btc_destination()
    saved = node.clock.offset_ns
    node.clock.offset_ns = 0  # the address was whitelisted just now: inside its time-lock
    try:
        node.whitelist(sub, "BTC", dest)
        _, w = node.withdrawals.submit(sub, "tl-1", "BTC", dest, 1_000_000, vault_id="hot", actor=f"client:{sub}")
        node.pipeline.run_once()
    finally:
        node.clock.offset_ns = saved
    w = node.withdrawals.get(w.id)
    assert_eq((w.status, w.sub_status), ("pending_screening", "held_for_review: address_in_timelock"), "held")
    assert w.risk["reasons"] == ["address_in_timelock"] and w.risk["details"], w.risk
    assert w.id in [x.id for x in node.withdrawals.review_queue()], "in the review queue"
    node.withdrawals.review(w.id, "deny", actor="staff:compliance", note="customer did not confirm the address")
    assert_eq(node.withdrawals.get(w.id).status, "rejected", "denied by review")
    assert_eq(balance(node, sub, "BTC"), BTC, "the hold is voided")
    node.check_ledger()


def test_velocity_exceeded_is_held_then_denied_after_a_policy_change(node):
    sub = node.customer(f"erin-{node.kind}")
    node.fund(sub, "BTC", 4 * BTC)
    dest = node.shared.btc_destination()
    node.whitelist(sub, "BTC", dest)
    ids = []
    for i, amount in enumerate((2 * BTC - 1, BTC + 2)):  # 24 h limit 3 BTC: the second crosses it
        _, w = node.withdrawals.submit(sub, f"vel-{i}", "BTC", dest, amount, vault_id="hot", actor=f"client:{sub}")
        ids.append(w.id)
    node.pipeline.run_once()
    first, second = (node.withdrawals.get(i) for i in ids)
    assert_eq(first.status, "pending_approval", "first within the 24 h window")
    assert_eq(second.sub_status, "held_for_review: velocity_day_exceeded", "second held")
    # Policy v-next: velocity breaches are denied. The change goes through two approvers.
    node.change_policy(velocity="deny")
    _, w3 = node.withdrawals.submit(sub, "vel-2", "BTC", dest, BTC // 2, vault_id="hot", actor=f"client:{sub}")
    node.pipeline.run_once()
    w3 = node.withdrawals.get(w3.id)
    assert_eq((w3.status, w3.sub_status), ("rejected", "velocity_day_exceeded"), "denied under the new policy")
    assert_eq(w3.risk["policy_version"], node.policy_version, "decided by the new version")
    for wid in ids:
        node.withdrawals.cancel(wid, actor=f"client:{sub}")
    assert_eq(balance(node, sub, "BTC"), 4 * BTC, "every hold voided")
    node.change_policy(velocity="hold")
    node.check_ledger()


def test_sanctioned_and_blocked_destinations_and_frozen_accounts_are_blocked(node):
    s = node.shared
    sub = node.customer(f"frank-{node.kind}")
    node.fund(sub, "BTC", BTC)
    sanctioned, blocked, fine = s.btc_destination(), s.btc_destination(), s.btc_destination()
    s.sanctions.write_text(s.sanctions.read_text() + sanctioned.upper() + "  # a listed entity\n")
    s.blocked.write_text(s.blocked.read_text() + blocked + "\n")
    for a in (sanctioned, blocked, fine):
        node.whitelist(sub, "BTC", a)
    cases = [("s", sanctioned, "destination_sanctioned"), ("b", blocked, "destination_blocked")]
    ids = {}
    for ext, dest, _ in cases:
        ids[ext] = node.withdrawals.submit(sub, ext, "BTC", dest, 1_000_000, vault_id="hot", actor=f"client:{sub}")[1].id
    node.pipeline.run_once()
    for ext, _, reason in cases:
        w = node.withdrawals.get(ids[ext])
        assert_eq((w.status, w.sub_status), ("blocked", reason), ext)
    node.withdrawals.freeze(sub, "court order 42", actor="staff:compliance")
    _, w = node.withdrawals.submit(sub, "f", "BTC", fine, 1_000_000, vault_id="hot", actor=f"client:{sub}")
    node.pipeline.run_once()
    w = node.withdrawals.get(w.id)
    assert_eq((w.status, w.sub_status), ("blocked", "account_frozen"), "frozen")
    assert_eq(balance(node, sub, "BTC"), BTC, "nothing held")
    node.check_ledger()


def test_a_signer_down_during_signing_does_not_stop_the_withdrawal(node):
    c = node.shared.cluster
    sub = node.customer(f"gina-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = node.shared.btc_destination()
    node.whitelist(sub, "BTC", dest)
    _, w = node.withdrawals.submit(sub, "down-1", "BTC", dest, 2_000_000, vault_id="hot", actor=f"client:{sub}")
    c.procs["peer-1"].kill()  # the first coordinator the node tries
    try:
        done = node.drive(w.id, "completed", timeout_s=120)
    finally:
        c.start("peer-1")
    assert_eq(node.shared.received_btc(dest), [(done.txid, 2_000_000)], "paid once")
    node.check_ledger()


def test_a_withdrawal_edited_in_the_database_after_approval_is_refused_by_the_peers(node):
    s = node.shared
    sub = node.customer(f"hank-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest, attacker = s.btc_destination(), s.btc_destination()
    node.whitelist(sub, "BTC", dest)
    _, w = node.withdrawals.submit(sub, "edit-1", "BTC", dest, 30_000_000, vault_id="hot", actor=f"client:{sub}")
    node.pipeline.run_once()
    approve(node, w.id, "approver-1")
    assert_eq(approve(node, w.id, "approver-2").status, "queued", "approved")
    # Someone with write access to the node's database redirects it after approval.
    intent = json.loads(node.withdrawals.get(w.id).intent_json)
    intent["payments"][0]["destination"] = attacker
    with node.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE withdrawals SET intent = :i, destination = :d WHERE id = :id"),
                     {"i": json.dumps(intent), "d": attacker, "id": w.id})
    refused_before = sum(s.cluster.metric(n, "custody_signer_requests_refused_total") for n in s.cluster.names)
    failed = node.drive(w.id, "failed")
    assert "approval_signature_invalid" in failed.sub_status, failed.sub_status
    refused = sum(s.cluster.metric(n, "custody_signer_requests_refused_total") for n in s.cluster.names) - refused_before
    assert refused >= 1, "the peers counted the refusal"
    assert_eq(s.received_btc(attacker), [], "nothing paid to the attacker")
    assert_eq(balance(node, sub, "BTC"), BTC, "hold voided")
    node.check_ledger()
