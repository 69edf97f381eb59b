"""Withdrawals, approvals and the whitelist through the API (in process, real store on SQLite
and PostgreSQL): create with external_id and Idempotency-Key, reads per client, cancel (hold
released), approvals verified against the policy's approver keys, whitelist with its time-lock,
and the withdrawal.* / approval.* events written with each change.

The chain side is not here (tests/functional/node runs the real node process against btcd and
the signer cluster): the screening step that the pipeline runs is called on the domain, and the
sub-account's BTC comes from a ledger transfer out of the hot wallet standing for a deposit.
"""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from api_helpers import assert_eq, assert_problem, signed
from nacl.signing import SigningKey

from api.app import Services
from node.client_withdrawals import ClientWithdrawals, evented_ledger
from node.customers import CODE_DEPOSIT, Customers
from node.deposits import Deposits
from node.ledger import LedgerKind, TransferCreate, TransferResult
from node.ports import Vault
from node.store.api_models import webhook_events
from node.wallets import Wallets
from node.withdrawals import Withdrawals, approval_message

BTC = 100_000_000
AUTO_MAX = 10_000_000
DEST = "bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
APPROVERS = {f"approver-{i}": SigningKey(bytes([i]) * 32) for i in (1, 2)}  # fixed test seeds


def policy(timelock_s: int = 0) -> str:
    apr = "\n".join(f'{a} = "{k.verify_key.encode().hex()}"' for a, k in APPROVERS.items())
    return f"""
version = 1
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
[kyc_tiers.standard.BTC]
per_withdrawal_max = "{5 * BTC}"
day_max = "{10 * BTC}"
month_max = "{10 * BTC}"
[whitelist]
required = true
timelock_s = {timelock_s}
[[vaults]]
id = "hot"
kind = "hot"
delay_s = 0
bands = [{{ asset = "BTC", amount_max = "{AUTO_MAX}", approvals_min = 0 }},
         {{ asset = "BTC", amount_max = "{10 * BTC}", approvals_min = 2 }}]
"""


class World:
    def __init__(self, harness_factory, url, schema, timelock_s=0):
        from node.store import open_store

        store = open_store(url, schema=schema)
        self.withdrawals = Withdrawals(evented_ledger(store), {"bitcoin": "regtest"})
        services = Services(ClientWithdrawals(self.withdrawals), Deposits(self.withdrawals.ledger, {}, vault_id="hot"))
        self.api = harness_factory(url, schema, services=services)
        self.store = store
        ledger = self.withdrawals.ledger
        ledger.create_ledger("BTC", 8, LedgerKind.CRYPTO, actor="test:setup")
        # Public key material only (any valid-looking point will do: nothing is signed here).
        self.withdrawals.register_vault(Vault("hot", ("p1", "p2", "p3"), 1, bytes.fromhex("02" + "11" * 32), b"\x22" * 32), "hot",
                                        actor="test:setup")
        self.hot = Wallets(ledger).create_wallet("hot:BTC", "hot", "BTC", "hot", actor="test:setup").account_id
        self.withdrawals.bootstrap_policy(policy(timelock_s), actor="test:setup")
        self.customers = Customers(ledger)
        self.admin = self.api.key(["admin", "read", "withdraw"])
        self.approver = self.api.key(["approve"])

    def customer(self, name: str, btc: int) -> str:
        self.customers.create_customer(name, name, actor="test:setup")
        sub = f"{name}.main"
        self.withdrawals.set_profile(sub, "standard", actor="test:setup")
        cust = self.customers.customer_account(sub, "BTC", actor="test:setup")
        [r] = self.withdrawals.ledger.create_transfers([TransferCreate(f"dep:{name}", self.hot, cust, btc, "BTC", CODE_DEPOSIT)],
                                                       actor="test:deposits")
        assert r is TransferResult.ok, r
        return sub

    def req(self, holder, method, path, body=None, key=None):
        headers, content = signed(holder, method, path, body, extra={"Idempotency-Key": key} if key else None)
        return self.api.http.request(method, path, content=content or None, headers=headers)

    def whitelist(self, sub, address=DEST):
        r = self.req(self.admin, "POST", f"/v1/sub-accounts/{sub}/whitelist", {"asset": "BTC", "address": address})
        assert r.status_code in (200, 201), r.text
        return r.json()

    def create(self, holder, sub, ext, amount, key=None, destination=DEST):
        return self.req(holder, "POST", "/v1/withdrawals",
                        {"external_id": ext, "sub_account_id": sub, "asset": "BTC", "destination": destination,
                         "amount": str(amount)}, key=key)

    def balance(self, holder, sub) -> dict:
        r = self.req(holder, "GET", f"/v1/sub-accounts/{sub}/balances")
        assert r.status_code == 200, r.text
        return {b["asset"]: b for b in r.json()["data"]}["BTC"]

    def events(self, client_id) -> list[tuple[str, dict]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_events.c.type, webhook_events.c.payload)
                                .where(webhook_events.c.client_id == client_id).order_by(webhook_events.c.seq)).all()
        return [(t, json.loads(p)["data"]) for t, p in rows]

    def close(self):
        self.store.dispose()


@pytest.fixture
def world(harness_factory, db):
    w = World(harness_factory, *db)
    yield w
    w.close()


def test_create_get_list_and_external_id_retries(world):
    sub = world.customer("acme", 2 * BTC)
    world.whitelist(sub)
    r = world.create(world.admin, sub, "wd-1", 1_000_000)
    assert_eq(r.status_code, 201, f"create {r.text}")
    w = r.json()
    assert_eq((w["status"], w["amount"], w["external_id"], w["sub_account_id"]), ("submitted", "1000000", "wd-1", sub), "created")
    assert_eq(world.balance(world.admin, sub)["pending_out"], "1000000", "held at submission")
    # The same external_id and fields: the same withdrawal (200), nothing held twice.
    again = world.create(world.admin, sub, "wd-1", 1_000_000)
    assert_eq((again.status_code, again.json()["id"]), (200, w["id"]), "retry")
    assert_eq(world.balance(world.admin, sub)["pending_out"], "1000000", "held once")
    # Other fields under the same external_id: refused, nothing changed.
    assert_problem(world.create(world.admin, sub, "wd-1", 2_000_000), 409, "exists_with_different_amount")
    other = world.customer("beta", BTC)
    assert_problem(world.create(world.admin, other, "wd-1", 1_000_000), 409, "exists_with_different_sub_account_id")
    assert_eq(world.balance(world.admin, other)["pending_out"], "0", "nothing held on the other sub-account")
    # Reads.
    assert_eq(world.req(world.admin, "GET", f"/v1/withdrawals/{w['id']}").json()["id"], w["id"], "get")
    assert_eq(world.req(world.admin, "GET", "/v1/withdrawals/by-external-id/wd-1").json()["id"], w["id"], "by external_id")
    assert_eq([x["id"] for x in world.req(world.admin, "GET", "/v1/withdrawals?external_id=wd-1").json()["data"]], [w["id"]], "?external_id")
    assert_eq(world.req(world.admin, "GET", "/v1/withdrawals?external_id=nope").json()["data"], [], "unknown external_id")
    for i in range(2, 5):
        assert world.create(world.admin, sub, f"wd-{i}", 1_000 * i).status_code == 201
    seen, cursor = [], None
    while True:
        page = world.req(world.admin, "GET", "/v1/withdrawals?limit=3" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [x["external_id"] for x in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert_eq(seen, ["wd-1", "wd-2", "wd-3", "wd-4"], "pages in creation order")
    # Another API client sees none of it, and may use the same external_id for its own.
    stranger = world.api.key(["read", "withdraw"])
    assert_problem(world.req(stranger, "GET", f"/v1/withdrawals/{w['id']}"), 404, "withdrawal_not_found")
    assert_eq(world.req(stranger, "GET", "/v1/withdrawals").json()["data"], [], "stranger's list")
    mine = world.create(stranger, sub, "wd-1", 1_000)
    assert_eq(mine.status_code, 201, f"another client's wd-1 is its own: {mine.text}")
    assert mine.json()["id"] != w["id"]


def test_refusals_change_nothing(world):
    sub = world.customer("acme", BTC)
    world.whitelist(sub)
    assert_problem(world.create(world.admin, sub, "big", 2 * BTC), 422, "insufficient_funds")
    assert_problem(world.create(world.admin, "nobody.main", "x", 1_000), 404, "sub_account_not_found")
    r = world.req(world.admin, "POST", "/v1/withdrawals", {"external_id": "x", "sub_account_id": sub, "asset": "DOGE",
                                                            "destination": DEST, "amount": "5"})
    assert_problem(r, 422, "asset_not_supported")
    r = world.req(world.admin, "POST", "/v1/withdrawals", {"external_id": "x", "sub_account_id": sub, "asset": "BTC",
                                                            "destination": DEST, "amount": 5})
    assert_problem(r, 422, "validation_failed")
    assert_eq(world.balance(world.admin, sub)["pending_out"], "0", "nothing held")
    assert_eq(world.req(world.admin, "GET", "/v1/withdrawals").json()["data"], [], "nothing created")
    # Scope and signature.
    reader = world.api.key(["read"])
    assert_problem(world.create(reader, sub, "x", 1_000), 403, "missing_scope")
    r = world.api.http.post("/v1/withdrawals", json={"external_id": "x"})
    assert r.status_code == 401, r.text
    assert_problem(world.req(world.admin, "GET", "/v1/approvals"), 403, "missing_scope")


def test_idempotency_key_replays_and_conflicts(world):
    sub = world.customer("acme", BTC)
    world.whitelist(sub)
    first = world.create(world.admin, sub, "idem-1", 5_000, key="k-1")
    assert_eq(first.status_code, 201, "first")
    again = world.create(world.admin, sub, "idem-1", 5_000, key="k-1")
    assert_eq((again.status_code, again.content, again.headers.get("idempotent-replayed")), (201, first.content, "true"), "replay")
    assert_problem(world.create(world.admin, sub, "idem-2", 5_000, key="k-1"), 409, "idempotency_key_reused")
    assert_eq(len(world.req(world.admin, "GET", "/v1/withdrawals").json()["data"]), 1, "one withdrawal")


def test_cancel_releases_the_hold_once(world):
    sub = world.customer("acme", BTC)
    world.whitelist(sub)
    w = world.create(world.admin, sub, "c-1", 7_000).json()
    r = world.req(world.admin, "POST", f"/v1/withdrawals/{w['id']}/cancel")
    assert_eq((r.status_code, r.json()["status"]), (200, "cancelled"), f"cancel {r.text}")
    b = world.balance(world.admin, sub)
    assert_eq((b["pending_out"], b["available"]), ("0", str(BTC)), "hold voided")
    assert_problem(world.req(world.admin, "POST", f"/v1/withdrawals/{w['id']}/cancel"), 409, "not_cancellable")
    assert_problem(world.req(world.admin, "POST", "/v1/withdrawals/wd_nope/cancel"), 404, "withdrawal_not_found")
    types = [t for t, _ in world.events(world.admin.key.client_id)]
    assert_eq(types, ["withdrawal.submitted", "withdrawal.cancelled"], "events")


def test_approvals_over_http(world):
    sub = world.customer("acme", 5 * BTC)
    world.whitelist(sub)
    big = world.create(world.admin, sub, "big-1", 2 * BTC).json()
    other = world.create(world.admin, sub, "big-2", BTC).json()
    for wid in (big["id"], other["id"]):  # the pipeline's screening step
        world.withdrawals.screen(world.withdrawals.get(wid))
    page = world.req(world.approver, "GET", "/v1/approvals").json()
    assert_eq([a["withdrawal"]["id"] for a in page["data"]], [big["id"], other["id"]], "pending approvals")
    item = page["data"][0]
    assert_eq(item["withdrawal"]["sub_status"], "awaiting_approvals: 0 of 2", "sub_status")
    intent_bytes = item["intent_canonical"].encode()
    assert_eq(intent_bytes, world.withdrawals.get(big["id"]).intent.canonical_bytes(), "the bytes to sign are the intent's")

    def decide(wid, approver, decision, signer=None, raw=None, at_ms=None, sent_at_ms=None):
        message = raw if raw is not None else approval_message(world.withdrawals.get(wid).intent, decision, at_ms)
        sig = (signer or APPROVERS[approver]).sign(message).signature.hex()
        body = {"approver_id": approver, "signature": sig}
        if (sent_at_ms or at_ms) is not None:
            body["approved_at_ms"] = sent_at_ms or at_ms
        return world.req(world.approver, "POST", f"/v1/approvals/{wid}/{decision}", body)

    # A signature by the wrong key, or over other bytes, or a rejection replayed as approval: refused.
    assert_problem(decide(big["id"], "approver-1", "approve", signer=APPROVERS["approver-2"]), 422, "approval_signature_invalid")
    assert_problem(decide(big["id"], "approver-1", "approve", raw=b"something else"), 422, "approval_signature_invalid")
    rejection = APPROVERS["approver-1"].sign(approval_message(world.withdrawals.get(big["id"]).intent, "reject")).signature.hex()
    r = world.req(world.approver, "POST", f"/v1/approvals/{big['id']}/approve", {"approver_id": "approver-1", "signature": rejection})
    assert_problem(r, 422, "approval_signature_invalid")
    assert_problem(decide(big["id"], "approver-9", "approve", signer=APPROVERS["approver-1"]), 422, "approver_unknown")
    # One of two, then the same approver again, then the second: queued.
    r = decide(big["id"], "approver-1", "approve")
    assert_eq((r.status_code, r.json()["withdrawal"]["status"]), (200, "pending_approval"), f"1 of 2 {r.text}")
    assert_problem(decide(big["id"], "approver-1", "approve"), 409, "already_decided_by_approver")
    # approver-2's approval is timed (the approver's clock signed with the intent); a time
    # other than the signed one is refused.
    now_ms = int(time.time() * 1000)
    assert_problem(decide(big["id"], "approver-2", "approve", at_ms=now_ms, sent_at_ms=now_ms + 1), 422,
                   "approval_signature_invalid")
    r = decide(big["id"], "approver-2", "approve", at_ms=now_ms)
    assert_eq(r.json()["withdrawal"]["status"], "queued", "2 of 2")
    assert_eq(r.json()["withdrawal"]["approvals"], [{"approver_id": "approver-1", "decision": "approve"},
                                                   {"approver_id": "approver-2", "decision": "approve"}], "approvals shown")
    assert_problem(decide(big["id"], "approver-1", "reject"), 409, "not_pending_approval")
    # A rejection releases the hold.
    r = decide(other["id"], "approver-2", "reject")
    assert_eq(r.json()["withdrawal"]["status"], "rejected", "rejected")
    assert_eq(world.balance(world.admin, sub)["pending_out"], str(2 * BTC), "only the approved one stays held")
    assert_eq(world.req(world.approver, "GET", "/v1/approvals").json()["data"], [], "nothing pending")
    types = [t for t, d in world.events(world.admin.key.client_id)]
    assert_eq(types, ["withdrawal.submitted", "withdrawal.submitted",
                      "withdrawal.pending_approval", "approval.requested",
                      "withdrawal.pending_approval", "approval.requested",
                      "approval.approved", "approval.approved", "withdrawal.queued",
                      "approval.rejected", "withdrawal.rejected"], "events in commit order")


def test_whitelist_timelock_list_and_delete(harness_factory, db):
    world = World(harness_factory, *db, timelock_s=3600)
    try:
        sub = world.customer("acme", BTC)
        r = world.req(world.admin, "POST", f"/v1/sub-accounts/{sub}/whitelist", {"asset": "BTC", "address": DEST})
        assert_eq(r.status_code, 201, r.text)
        e = r.json()
        assert e["usable_after"] > e["added_at"], e
        again = world.req(world.admin, "POST", f"/v1/sub-accounts/{sub}/whitelist", {"asset": "BTC", "address": DEST.upper()})
        assert_eq((again.status_code, again.json()["usable_after"]), (200, e["usable_after"]), "same entry (case-insensitive)")
        for i in range(3):
            world.whitelist(sub, f"bcrt1qtest{i:032d}")
        seen, cursor = [], None
        while True:
            page = world.req(world.admin, "GET", f"/v1/sub-accounts/{sub}/whitelist?limit=2" + (f"&cursor={cursor}" if cursor else "")).json()
            seen += [x["address"] for x in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert_eq(len(seen), 4, f"all entries once: {seen}")
        assert_eq(seen, sorted(seen), "stable order")
        # A withdrawal to an address in its time-lock is held for review by screening.
        w = world.create(world.admin, sub, "tl-1", 1_000).json()
        screened = world.withdrawals.screen(world.withdrawals.get(w["id"]))
        assert_eq((screened.status, screened.sub_status), ("pending_screening", "held_for_review: address_in_timelock"), "held")
        r = world.req(world.admin, "DELETE", f"/v1/sub-accounts/{sub}/whitelist/BTC/{DEST}")
        assert_eq(r.status_code, 200, r.text)
        assert_problem(world.req(world.admin, "DELETE", f"/v1/sub-accounts/{sub}/whitelist/BTC/{DEST}"), 404,
                       "whitelist_entry_not_found")
        assert_problem(world.req(world.admin, "GET", "/v1/sub-accounts/nobody.main/whitelist"), 404, "sub_account_not_found")
        assert_problem(world.req(world.admin, "GET", f"/v1/sub-accounts/{sub}/whitelist?cursor=bm9wZQ"), 400, "invalid_cursor")
    finally:
        world.close()


def test_auth_failures_execute_nothing(world):
    sub = world.customer("acme", BTC)
    world.whitelist(sub)
    body = {"external_id": "auth-1", "sub_account_id": sub, "asset": "BTC", "destination": DEST, "amount": "1000"}
    # A body other than the one signed.
    headers, _ = signed(world.admin, "POST", "/v1/withdrawals", body)
    tampered = json.dumps({**body, "amount": "900000"}).encode()
    r = world.api.http.post("/v1/withdrawals", content=tampered, headers=headers)
    assert_eq(r.status_code, 401, f"tampered body: {r.text}")
    # A replayed request (same nonce) after a first one that executed.
    headers, content = signed(world.admin, "POST", "/v1/withdrawals", body)
    assert_eq(world.api.http.post("/v1/withdrawals", content=content, headers=headers).status_code, 201, "first")
    r = world.api.http.post("/v1/withdrawals", content=content, headers=headers)
    assert_eq(r.status_code, 401, f"replay: {r.text}")
    # An approval from a key without the approve scope.
    w = world.req(world.admin, "GET", "/v1/withdrawals").json()["data"][0]
    r = world.req(world.admin, "POST", f"/v1/approvals/{w['id']}/approve", {"approver_id": "approver-1", "signature": "00" * 64})
    assert_problem(r, 403, "missing_scope")
    assert_eq([x["amount"] for x in world.req(world.admin, "GET", "/v1/withdrawals").json()["data"]], ["1000"], "one withdrawal")
    assert_eq(world.balance(world.admin, sub)["pending_out"], "1000", "held once")


def test_concurrent_creates_make_one_withdrawal(world):
    import concurrent.futures

    sub = world.customer("acme", BTC)
    other = world.customer("beta", BTC)
    world.whitelist(sub)
    world.whitelist(other)
    subs = [sub, other] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: world.create(world.admin, s, "race-1", 2_000), subs))
    statuses = sorted(r.status_code for r in results)
    assert_eq(statuses.count(201), 1, f"exactly one created: {statuses}")
    assert all(s in (200, 201, 409) for s in statuses), statuses
    [w] = world.req(world.admin, "GET", "/v1/withdrawals").json()["data"]
    held = {s: world.balance(world.admin, s)["pending_out"] for s in (sub, other)}
    assert_eq(sorted(held.values()), ["0", "2000"], f"held once, on the winner's sub-account: {held}")
    assert_eq(held[w["sub_account_id"]], "2000", "the winner holds it")
