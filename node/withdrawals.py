"""Withdrawals: the state machine, the ledger hold, risk screening, approvals, policy versions.

Statuses (ARCHITECTURE.md, "Withdrawal"), with a `sub_status` naming the reason:

    submitted -> pending_screening -> pending_approval -> queued -> pending_signature
              -> broadcasting -> confirming -> completed
    or ending rejected (risk deny / an approver said no / staff review), blocked (frozen,
    sanctions, block list), cancelled (by the client, before signing), failed (after retries).

Every transition is one `Store.write`: the status change, the record it depends on (the
unsigned transaction, the signed bytes and txid) and the ledger transfers commit together and
are journaled. The amount is held at submission (a pending transfer customer -> withdrawal
clearing), posted on completion (then clearing -> hot wallet, and the network fee -> the
network fees account) and voided on any ending other than completed.

Internal movements (kind "rebalance": hot -> cold; "refill": cold -> hot; "sweep": deposit ->
hot) use the same machine without a customer hold; their completion books wallet to wallet.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

import rfc8785
from sqlalchemy import and_, select

from node import limits
from node import risk as rk
from node.customers import CODE_NETWORK_FEE, CODE_SWEEP, CODE_WITHDRAWAL, SYSTEM_OWNER, Customers
from node.ledger import AccountKind, Ledger, LedgerError, TransferCreate, TransferFlags, TransferResult
from node.ports import Approval, InputKey, Payment, UnsignedTransaction, Vault, WithdrawalIntent, band_amount
from node.ports import approval_message as _signed_approval
from node.store import WriteTx
from node.store.models import sub_accounts, wallets
from node.wallets import deposit_book_account
from node.store.withdrawal_models import (address_whitelist, risk_policies, risk_profiles, vaults, withdrawal_approvals,
                                          withdrawals)

SUBMITTED = "submitted"
PENDING_SCREENING = "pending_screening"
PENDING_APPROVAL = "pending_approval"
QUEUED = "queued"
PENDING_SIGNATURE = "pending_signature"
BROADCASTING = "broadcasting"
CONFIRMING = "confirming"
COMPLETED = "completed"
REJECTED = "rejected"
BLOCKED = "blocked"
CANCELLED = "cancelled"
FAILED = "failed"
ACTIVE = (SUBMITTED, PENDING_SCREENING, PENDING_APPROVAL, QUEUED, PENDING_SIGNATURE, BROADCASTING, CONFIRMING)
FINAL = (COMPLETED, REJECTED, BLOCKED, CANCELLED, FAILED)
CANCELLABLE = (SUBMITTED, PENDING_SCREENING, PENDING_APPROVAL, QUEUED)
# Transitions the machine allows (from -> to). Anything else is a programmer error.
TRANSITIONS = {
    SUBMITTED: {PENDING_SCREENING, PENDING_APPROVAL, QUEUED, REJECTED, BLOCKED, CANCELLED},
    PENDING_SCREENING: {PENDING_APPROVAL, QUEUED, REJECTED, BLOCKED, CANCELLED},
    PENDING_APPROVAL: {QUEUED, REJECTED, CANCELLED},
    QUEUED: {PENDING_SIGNATURE, QUEUED, FAILED, CANCELLED},
    PENDING_SIGNATURE: {BROADCASTING, PENDING_SIGNATURE, CONFIRMING, FAILED},
    BROADCASTING: {CONFIRMING, BROADCASTING, FAILED},
    CONFIRMING: {COMPLETED, CONFIRMING, BROADCASTING, PENDING_SIGNATURE, FAILED},
}

KIND_WITHDRAWAL = "withdrawal"
KIND_REBALANCE = "rebalance"  # hot -> cold
KIND_REFILL = "refill"  # cold -> hot
KIND_SWEEP = "sweep"  # deposit addresses -> hot
INTERNAL_KINDS = (KIND_REBALANCE, KIND_REFILL, KIND_SWEEP)

# Our own vault paths (BIP44-like branches below the group key): deposit addresses live under
# (0, i), bitcoin change under (1, i); the vault's own wallet address (the hot wallet's
# ethereum sender, the receive address of sweeps and rebalances) is VAULT_WALLET_PATH.
VAULT_WALLET_PATH = (2, 0)
DEPOSIT_BRANCH = 0

ETH_ASSETS_PREFIX = "ERC20:"


def chain_of(asset: str) -> str:
    if asset == "BTC":
        return "bitcoin"
    if asset == "ETH" or asset.startswith(ETH_ASSETS_PREFIX):
        return "ethereum"
    raise WithdrawalError("asset_not_supported", asset)


def fee_asset_of(chain: str) -> str:
    return {"bitcoin": "BTC", "ethereum": "ETH"}[chain]


def path_text(p) -> str:
    return "/".join(str(i) for i in p)


def path_of(t: str) -> tuple[int, ...]:
    return tuple(int(i) for i in t.split("/")) if t else ()


class WithdrawalError(Exception):
    """An expected refusal, named as a sentence (`exceeds_available_balance`, ...); nothing changed."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StaleStatus(Exception):
    """The withdrawal moved on since it was read (another worker, or a retry): nothing written."""


@dataclass(frozen=True)
class Withdrawal:
    id: str
    sub_account_id: str
    external_id: str
    kind: str
    vault_id: str
    source_path: tuple[int, ...]
    chain: str
    network: str
    asset: str
    destination: str
    amount: int
    fee_max: int
    status: str
    sub_status: str
    risk: dict | None
    intent_json: str
    unsigned_tx: dict | None
    signed_raw: bytes | None
    txid: str | None
    fee_paid: int | None
    attempts: int
    not_before_ns: int
    broadcast_height: int | None
    created_at_ns: int
    updated_at_ns: int
    txids: tuple[str, ...] = ()  # every signed version, oldest first; `txid` is the newest (or the mined one)
    broadcast_at_ns: int | None = None

    @classmethod
    def from_row(cls, r) -> "Withdrawal":
        return cls(r.id, r.sub_account_id, r.external_id, r.kind, r.vault_id, path_of(r.source_path), r.chain, r.network,
                   r.asset, r.destination, r.amount, r.fee_max, r.status, r.sub_status,
                   json.loads(r.risk) if r.risk else None, r.intent, json.loads(r.unsigned_tx) if r.unsigned_tx else None,
                   bytes.fromhex(r.signed_raw) if r.signed_raw else None, r.txid, r.fee_paid, r.attempts, r.not_before_ns,
                   r.broadcast_height, r.created_at_ns, r.updated_at_ns, tuple(json.loads(r.txids)) if r.txids else (),
                   r.broadcast_at_ns)

    @property
    def intent(self) -> WithdrawalIntent:
        return intent_from_json(self.intent_json)

    @property
    def hold_id(self) -> str:
        return f"{self.id}:hold"

    def unsigned(self) -> UnsignedTransaction | None:
        return None if self.unsigned_tx is None else unsigned_from_json(self.unsigned_tx)

    def public(self) -> dict:
        """What a client sees (amounts as decimal strings)."""
        return {"id": self.id, "external_id": self.external_id, "kind": self.kind, "sub_account_id": self.sub_account_id,
                "asset": self.asset, "destination": self.destination, "amount": str(self.amount), "status": self.status,
                "sub_status": self.sub_status, "txid": self.txid,
                "fee_paid": None if self.fee_paid is None else str(self.fee_paid), "risk": self.risk}


def intent_from_json(text: str) -> WithdrawalIntent:
    d = json.loads(text)
    return WithdrawalIntent(
        intent_id=d["intent_id"], vault_id=d["vault_id"], chain=d["chain"], network=d["network"], asset=d["asset"],
        payments=tuple(Payment(p["destination"], int(p["amount"])) for p in d["payments"]), fee_max=int(d["fee_max"]),
        kind=d["kind"], own_destination_paths=tuple(tuple(p) for p in d["own_destination_paths"]),
        own_destination_vault=d.get("own_destination_vault", ""))


def unsigned_to_json(t: UnsignedTransaction) -> str:
    d = {"chain": t.chain, "network": t.network, "payload": t.payload.hex(),
         "inputs": [{"path": list(i.path), "amount": str(i.amount)} for i in t.inputs],
         "change_paths": [list(p) for p in t.change_paths]}
    if t.prev_txs:  # bitcoin: what proves the input amounts to the signer peers
        d["prev_txs"] = [raw.hex() for raw in t.prev_txs]
    if t.nonce_evidence:  # ethereum: what lets the peers sign a nonce past their window
        d["nonce_evidence"] = t.nonce_evidence.hex()
    return rfc8785.dumps(d).decode()


def unsigned_from_json(d: dict) -> UnsignedTransaction:
    return UnsignedTransaction(d["chain"], d["network"], bytes.fromhex(d["payload"]),
                               tuple(InputKey(tuple(i["path"]), int(i["amount"])) for i in d["inputs"]),
                               tuple(tuple(p) for p in d["change_paths"]),
                               tuple(bytes.fromhex(h) for h in d.get("prev_txs", ())),
                               bytes.fromhex(d.get("nonce_evidence", "")))


REJECT_DOMAIN = b"custody/withdrawal-reject/v1\n"


def approval_message(intent: WithdrawalIntent, decision: str, approved_at_ms: int | None = None) -> bytes:
    """Approve: the intent's canonical bytes (what the signer peers verify too), or with
    `approved_at_ms` the timed form (node/ports.py `approval_message`: a cold vault's delay is
    counted from signed times). Reject: the intent under a domain prefix, so a rejection can
    never be replayed as an approval."""
    assert decision in ("approve", "reject")
    if decision == "approve":
        return _signed_approval(intent, approved_at_ms)
    assert approved_at_ms is None, "a rejection is not timed"
    return REJECT_DOMAIN + intent.canonical_bytes()


class Withdrawals:
    """The withdrawal domain over the store. `networks`: chain -> network ("bitcoin" ->
    "regtest", "ethereum" -> "1337"): the node's configured networks."""

    def __init__(self, ledger: Ledger, networks: dict[str, str], *, wall_clock_ns=time.time_ns,
                 approval_clock_ms=lambda: time.time_ns() // 1_000_000):
        """`wall_clock_ns`: the node's clock (screening, time-locks, a cold vault's not-before);
        `approval_clock_ms`: the real clock approvers' signed times are held against."""
        self.approval_clock_ms = approval_clock_ms
        self.ledger = ledger
        self.store = ledger.store
        self.customers = Customers(ledger)
        self.networks = dict(networks)
        self.now_ns = wall_clock_ns
        self._policy: rk.Policy | None = None

    # ---------------------------------------------------------------- vaults
    def register_vault(self, vault: Vault, kind: str, *, actor: str) -> None:
        if kind not in ("hot", "cold"):
            raise ValueError("kind must be hot or cold")
        row = {"id": vault.vault_id, "kind": kind, "committee": json.dumps(list(vault.committee)), "threshold": vault.threshold,
               "public_key": vault.public_key.hex(), "chain_code": vault.chain_code.hex()}

        def fn(tx: WriteTx):
            old = tx.conn.execute(select(vaults).where(vaults.c.id == vault.vault_id)).one_or_none()
            if old is not None:
                if (old.public_key, old.chain_code, old.kind) != (row["public_key"], row["chain_code"], kind):
                    raise WithdrawalError("vault_exists_with_different_key", vault.vault_id)
                tx.conn.execute(vaults.update().where(vaults.c.id == vault.vault_id).values(committee=row["committee"], threshold=vault.threshold))
                return None, {"vault": row, "update": True}
            tx.conn.execute(vaults.insert(), {**row, "created_at_ns": tx.now_ns()})
            return None, {"vault": row}

        self.store.write(actor, "vault.register", fn)

    def vaults(self) -> dict[str, tuple[Vault, str]]:
        with self.store.reading() as conn:
            return {r.id: (Vault(r.id, tuple(json.loads(r.committee)), r.threshold, bytes.fromhex(r.public_key),
                                 bytes.fromhex(r.chain_code)), r.kind) for r in conn.execute(select(vaults))}

    def vault(self, vault_id: str) -> Vault:
        v = self.vaults().get(vault_id)
        if v is None:
            raise WithdrawalError("vault_unknown", vault_id)
        return v[0]

    # ---------------------------------------------------------------- policy versions
    def bootstrap_policy(self, text: str, *, actor: str) -> int:
        """The first policy of a fresh node, active at once (there are no approvers yet to sign
        it). Refused once any policy is active: changes go through propose/approve."""
        policy = rk.Policy.parse(text)

        def fn(tx: WriteTx):
            if tx.conn.execute(select(risk_policies.c.version).where(risk_policies.c.status == "active")).first():
                raise WithdrawalError("policy_already_active", "propose a new version instead")
            self._insert_policy(tx, policy, text, "active", actor, {})
            return policy.version, {"policy": {"version": policy.version, "sha256": rk.policy_digest(text).hex(), "status": "active"}}

        v = self.store.write(actor, "risk_policy.bootstrap", fn)
        self._policy = None
        return v

    def _insert_policy(self, tx, policy: rk.Policy, text: str, status: str, actor: str, approvals: dict) -> None:
        if tx.conn.execute(select(risk_policies.c.version).where(risk_policies.c.version == policy.version)).first():
            raise WithdrawalError("policy_version_exists", str(policy.version))
        newest = tx.conn.execute(select(risk_policies.c.version).order_by(risk_policies.c.version.desc())).first()
        if newest is not None and policy.version <= newest.version:
            raise WithdrawalError("policy_version_not_newer", f"{policy.version} <= {newest.version}")
        tx.conn.execute(risk_policies.insert(), {"version": policy.version, "body": text, "sha256": rk.policy_digest(text).hex(),
                                                 "status": status, "approvals": json.dumps(approvals), "proposed_by": actor,
                                                 "created_at_ns": tx.now_ns()})

    def propose_policy(self, text: str, *, actor: str) -> int:
        policy = rk.Policy.parse(text)

        def fn(tx: WriteTx):
            self._insert_policy(tx, policy, text, "proposed", actor, {})
            return policy.version, {"policy": {"version": policy.version, "sha256": rk.policy_digest(text).hex(), "status": "proposed"}}

        return self.store.write(actor, "risk_policy.propose", fn)

    def approve_policy(self, version: int, approver_id: str, signature: bytes) -> str:
        """An approver of the ACTIVE policy signs the proposed version's digest; with
        RISK_POLICY_APPROVALS_MIN distinct approvals it becomes active. Returns its status."""
        active = self.policy()

        def fn(tx: WriteTx):
            r = tx.conn.execute(select(risk_policies).where(risk_policies.c.version == version)).one_or_none()
            if r is None:
                raise WithdrawalError("policy_version_not_found", str(version))
            if r.status != "proposed":
                raise WithdrawalError("policy_not_proposed", r.status)
            try:
                active.verify_approval(approver_id, rk.policy_digest(r.body), signature)
            except rk.ApprovalRefused as exc:
                raise WithdrawalError(exc.reason, exc.detail) from None
            approvals = json.loads(r.approvals)
            approvals[approver_id] = signature.hex()
            status = "active" if len(approvals) >= limits.RISK_POLICY_APPROVALS_MIN else "proposed"
            if status == "active":
                tx.conn.execute(risk_policies.update().where(risk_policies.c.status == "active").values(status="superseded"))
            tx.conn.execute(risk_policies.update().where(risk_policies.c.version == version).values(approvals=json.dumps(approvals), status=status))
            return status, {"policy": {"version": version, "approver": approver_id, "status": status}}

        status = self.store.write(f"approver:{approver_id}", "risk_policy.approve", fn)
        self._policy = None
        return status

    def policy(self) -> rk.Policy:
        with self.store.reading() as conn:
            r = conn.execute(select(risk_policies.c.version, risk_policies.c.body).where(risk_policies.c.status == "active")).one_or_none()
        if r is None:
            raise WithdrawalError("no_active_policy")
        if self._policy is None or self._policy.version != r.version:
            self._policy = rk.Policy.parse(r.body)
        return self._policy

    # ---------------------------------------------------------------- profiles, whitelist
    def set_profile(self, sub_account_id: str, kyc_tier: str, *, frozen_reason: str | None = None, actor: str) -> None:
        def fn(tx: WriteTx):
            if tx.conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_account_id)).first() is None:
                raise WithdrawalError("sub_account_not_found", sub_account_id)
            old = tx.conn.execute(select(risk_profiles).where(risk_profiles.c.sub_account_id == sub_account_id)).one_or_none()
            values = {"kyc_tier": kyc_tier, "frozen_reason": frozen_reason, "updated_at_ns": tx.now_ns()}
            if old is None:
                tx.conn.execute(risk_profiles.insert(), {"sub_account_id": sub_account_id, **values})
            else:
                tx.conn.execute(risk_profiles.update().where(risk_profiles.c.sub_account_id == sub_account_id).values(**values))
            before = None if old is None else {"kyc_tier": old.kyc_tier, "frozen_reason": old.frozen_reason}
            return None, {"sub_account_id": sub_account_id, "before": before, "after": {"kyc_tier": kyc_tier, "frozen_reason": frozen_reason}}

        self.store.write(actor, "risk_profile.set", fn)

    def freeze(self, sub_account_id: str, reason: str, *, actor: str) -> None:
        tier = self._profile(sub_account_id).kyc_tier or "none"
        self.set_profile(sub_account_id, tier, frozen_reason=reason, actor=actor)

    def _profile(self, sub_account_id: str, conn=None) -> rk.Profile:
        q = select(risk_profiles).where(risk_profiles.c.sub_account_id == sub_account_id)
        if conn is None:
            with self.store.reading() as c:
                r = c.execute(q).one_or_none()
        else:
            r = conn.execute(q).one_or_none()
        return rk.Profile(None) if r is None else rk.Profile(r.kyc_tier, r.frozen_reason)

    def whitelist(self, sub_account_id: str, asset: str, address: str, *, actor: str) -> int:
        """Adds a destination; usable after the policy's time-lock. Returns usable_after_ns."""
        if not isinstance(address, str) or not 1 <= len(address) <= 128:
            raise WithdrawalError("address_invalid", "1..128 characters")
        timelock_s = self.policy().whitelist_timelock_s

        def fn(tx: WriteTx):
            key = and_(address_whitelist.c.sub_account_id == sub_account_id, address_whitelist.c.asset == asset,
                       address_whitelist.c.address == rk.normalise_address(address))
            old = tx.conn.execute(select(address_whitelist).where(key)).one_or_none()
            if old is not None:
                return old.usable_after_ns, None
            usable = tx.now_ns() + timelock_s * 1_000_000_000
            tx.conn.execute(address_whitelist.insert(), {"sub_account_id": sub_account_id, "asset": asset,
                                                         "address": rk.normalise_address(address), "added_at_ns": tx.now_ns(),
                                                         "usable_after_ns": usable})
            return usable, {"sub_account_id": sub_account_id, "asset": asset, "address": address, "usable_after_ns": usable}

        return self.store.write(actor, "whitelist.add", fn)

    # ---------------------------------------------------------------- accounts
    def _account(self, tx: WriteTx, owner: str, asset: str, kind: str, body: dict) -> int:
        # Not cached: an account created inside a write that then rolls back must not survive it.
        return self.customers._ensure_account(tx, owner, asset, kind, body)

    def wallet_account(self, conn, vault_id: str, asset: str) -> int:
        # The vault's own wallet (hot or cold), never its deposit wallet (node/deposits/ books that one).
        r = conn.execute(select(wallets.c.account_id).where(and_(wallets.c.vault_id == vault_id, wallets.c.asset == asset,
                                                                 wallets.c.kind != "deposit"))
                         .order_by(wallets.c.id)).first()
        if r is None:
            raise WithdrawalError("wallet_not_found", f"{vault_id} {asset}")
        return r.account_id

    # ---------------------------------------------------------------- submit
    def submit(self, sub_account_id: str, external_id: str, asset: str, destination: str, amount: int, *,
               vault_id: str, actor: str) -> tuple[str, Withdrawal]:
        """Creates the withdrawal and holds the amount. Returns ("ok" | "exists", withdrawal);
        a retry with the same external_id and fields is "exists"; with other fields, or a hold
        the balance does not cover, raises WithdrawalError and changes nothing."""
        if type(amount) is not int or amount <= 0:
            raise WithdrawalError("amount_must_be_positive_integer", repr(amount))
        if not isinstance(external_id, str) or not 1 <= len(external_id) <= 128:
            raise WithdrawalError("external_id_invalid", "1..128 characters")
        if not isinstance(destination, str) or not 1 <= len(destination) <= 128:
            raise WithdrawalError("destination_invalid", "1..128 characters")
        chain = chain_of(asset)
        network = self.networks.get(chain)
        if network is None:
            raise WithdrawalError("chain_not_configured", chain)
        policy = self.policy()
        fee_max = policy.fee_max.get(chain)
        if fee_max is None:
            raise WithdrawalError("fee_max_not_in_policy", chain)
        return self._create(KIND_WITHDRAWAL, sub_account_id, external_id, asset, destination, amount, vault_id,
                            VAULT_WALLET_PATH, chain, network, fee_max, (), actor)

    def submit_internal(self, kind: str, external_id: str, asset: str, destination: str, amount: int, *, vault_id: str,
                        source_path=VAULT_WALLET_PATH, own_destination_paths=(), own_destination_vault: str = "",
                        actor: str) -> tuple[str, Withdrawal]:
        """A movement between our own wallets (no customer hold): rebalance, refill, sweep.
        A refill names the vault it pays (`own_destination_vault`) and the path of that vault's
        address (`own_destination_paths`): every peer derives the address itself from that
        vault's public keys in its own policy."""
        assert kind in INTERNAL_KINDS, kind
        assert kind != KIND_REFILL or (own_destination_vault and own_destination_paths), "a refill names the vault it pays"
        chain = chain_of(asset)
        policy = self.policy()
        return self._create(kind, SYSTEM_OWNER, external_id, asset, destination, amount, vault_id, tuple(source_path), chain,
                            self.networks[chain], policy.fee_max[chain], tuple(own_destination_paths), actor,
                            own_destination_vault)

    def _create(self, kind, sub_account_id, external_id, asset, destination, amount, vault_id, source_path, chain, network,
                fee_max, own_paths, actor, own_vault: str = "") -> tuple[str, Withdrawal]:
        wid = "wd_" + secrets.token_hex(12)
        # A rebalance pays our own cold wallet: a "sweep" intent when it names that vault (the
        # peers then derive the address themselves), else an ordinary payment.
        intent_kind = {KIND_SWEEP: "sweep", KIND_REFILL: "refill",
                       KIND_REBALANCE: "sweep" if own_vault else "withdrawal"}.get(kind, "withdrawal")
        intent = WithdrawalIntent(intent_id=wid, vault_id=vault_id, chain=chain, network=network, asset=asset,
                                  payments=(Payment(destination, amount),), fee_max=fee_max,
                                  kind=intent_kind, own_destination_paths=own_paths, own_destination_vault=own_vault)

        def fn(tx: WriteTx):
            old = tx.conn.execute(select(withdrawals).where(and_(withdrawals.c.sub_account_id == sub_account_id,
                                                                 withdrawals.c.external_id == external_id))).one_or_none()
            if old is not None:
                w = Withdrawal.from_row(old)
                for name, mine, theirs in (("asset", asset, w.asset), ("destination", destination, w.destination),
                                           ("amount", amount, w.amount), ("vault_id", vault_id, w.vault_id)):
                    if mine != theirs:
                        raise WithdrawalError(f"exists_with_different_{name}", external_id)
                return ("exists", w), None
            if tx.conn.execute(select(vaults.c.id).where(vaults.c.id == vault_id)).first() is None:
                raise WithdrawalError("vault_unknown", vault_id)
            body: dict = {}
            if kind == KIND_WITHDRAWAL:
                if tx.conn.execute(select(sub_accounts.c.id).where(sub_accounts.c.id == sub_account_id)).first() is None:
                    raise WithdrawalError("sub_account_not_found", sub_account_id)
                cust = self._account(tx, sub_account_id, asset, AccountKind.CUSTOMER.value, body)
                clearing = self._account(tx, SYSTEM_OWNER, asset, AccountKind.WITHDRAWAL_CLEARING.value, body)
                [res] = self.ledger.apply_transfers(tx, [TransferCreate(
                    f"{wid}:hold", cust, clearing, amount, asset, CODE_WITHDRAWAL, TransferFlags.PENDING, user_data=wid)], body)
                if res is not TransferResult.ok:
                    raise WithdrawalError(res.value, f"hold of {amount} {asset} on {sub_account_id}")
            now = tx.now_ns()
            row = {"id": wid, "sub_account_id": sub_account_id, "external_id": external_id, "kind": kind, "vault_id": vault_id,
                   "source_path": path_text(source_path), "chain": chain, "network": network, "asset": asset,
                   "destination": destination, "amount": amount, "fee_max": fee_max, "status": SUBMITTED, "sub_status": "",
                   "risk": None, "intent": intent.canonical_bytes().decode(), "unsigned_tx": None, "signed_raw": None,
                   "txid": None, "fee_paid": None, "attempts": 0, "not_before_ns": 0, "broadcast_height": None,
                   "created_at_ns": now, "updated_at_ns": now}
            tx.conn.execute(withdrawals.insert(), row)
            body["withdrawal"] = {"id": wid, "kind": kind, "sub_account_id": sub_account_id, "external_id": external_id,
                                  "asset": asset, "destination": destination, "amount": str(amount), "vault_id": vault_id}
            w = Withdrawal.from_row(tx.conn.execute(select(withdrawals).where(withdrawals.c.id == wid)).one())
            return ("ok", w), body

        return self.store.write(actor, "withdrawal.submit", fn)

    # ---------------------------------------------------------------- reads
    def get(self, wid: str) -> Withdrawal:
        with self.store.reading() as conn:
            r = conn.execute(select(withdrawals).where(withdrawals.c.id == wid)).one_or_none()
        if r is None:
            raise WithdrawalError("withdrawal_not_found", wid)
        return Withdrawal.from_row(r)

    def with_status(self, status: str, limit: int = limits.WITHDRAWAL_BATCH_MAX) -> list[Withdrawal]:
        assert 1 <= limit <= limits.WITHDRAWAL_LIST_MAX
        with self.store.reading() as conn:
            rows = conn.execute(select(withdrawals).where(withdrawals.c.status == status)
                                .order_by(withdrawals.c.updated_at_ns, withdrawals.c.id).limit(limit))
            return [Withdrawal.from_row(r) for r in rows]

    def review_queue(self, limit: int = 100) -> list[Withdrawal]:
        """Held for review, oldest first: what staff work through."""
        return [w for w in self.with_status(PENDING_SCREENING, limit) if w.sub_status.startswith("held_for_review")]

    def _approval_rows(self, wid: str):
        with self.store.reading() as conn:
            return conn.execute(select(withdrawal_approvals).where(withdrawal_approvals.c.withdrawal_id == wid)
                                .order_by(withdrawal_approvals.c.approver_id)).all()

    def approvals(self, wid: str) -> list[tuple[str, str, bytes]]:
        return [(r.approver_id, r.decision, bytes.fromhex(r.signature)) for r in self._approval_rows(wid)]

    def signing_approvals(self, w: Withdrawal) -> tuple[Approval, ...]:
        """What the peers verify: each approval with its signed time when it has one."""
        return tuple(Approval(r.approver_id, bytes.fromhex(r.signature), r.approved_at_ms)
                     for r in self._approval_rows(w.id) if r.decision == "approve")

    # ---------------------------------------------------------------- transitions
    def transition(self, w: Withdrawal, to: str, sub_status: str = "", *, actor: str, ledger_events=None,
                   extra_body: dict | None = None, **values) -> Withdrawal:
        """One status change, conditional on the status read (else StaleStatus), with its
        record fields and ledger transfers in the same transaction."""
        assert to in TRANSITIONS.get(w.status, ()), f"{w.status} -> {to} is not a transition"
        sub_status = sub_status[: limits.WITHDRAWAL_REASON_CHARS_MAX]

        def fn(tx: WriteTx):
            body: dict = {"withdrawal": w.id, "from": w.status, "to": to, "sub_status": sub_status}
            if extra_body:
                body.update(extra_body)
            events = ledger_events(tx, body) if ledger_events else []
            if events:
                results = self.ledger.apply_transfers(tx, events, body)
                bad = [(e.id, r.value) for e, r in zip(events, results) if r not in (TransferResult.ok, TransferResult.exists)]
                if bad:
                    raise LedgerError(TransferResult(bad[0][1]), f"withdrawal {w.id}: {bad}")
            res = tx.conn.execute(withdrawals.update().where(and_(withdrawals.c.id == w.id, withdrawals.c.status == w.status,
                                                                  withdrawals.c.updated_at_ns == w.updated_at_ns))
                                  .values(status=to, sub_status=sub_status, updated_at_ns=tx.next_timestamp_ns(), **values))
            if res.rowcount != 1:
                raise StaleStatus(w.id)
            return Withdrawal.from_row(tx.conn.execute(select(withdrawals).where(withdrawals.c.id == w.id)).one()), body

        return self.store.write(actor, f"withdrawal.{to}", fn)

    def void_events(self, w: Withdrawal):
        if w.kind != KIND_WITHDRAWAL:
            return None
        return lambda tx, body: [TransferCreate(f"{w.id}:void", pending_id=w.hold_id, flags=TransferFlags.VOID_PENDING)]

    def completion_events(self, w: Withdrawal, fee_paid: int, dest_vault_id: str | None = None):
        """Post the hold; clearing -> source wallet (what left the chain); network fee -> its account.
        Internal movements: source wallet -> destination wallet, and the fee."""
        fee_asset = fee_asset_of(w.chain)

        def build(tx: WriteTx, body: dict):
            src = self.wallet_account(tx.conn, w.vault_id, w.asset)
            fee_src_vault_wallet = True
            ev = []
            if w.kind == KIND_WITHDRAWAL:
                clearing = self._account(tx, SYSTEM_OWNER, w.asset, AccountKind.WITHDRAWAL_CLEARING.value, body)
                ev.append(TransferCreate(f"{w.id}:post", pending_id=w.hold_id, flags=TransferFlags.POST_PENDING))
                ev.append(TransferCreate(f"{w.id}:out", clearing, src, w.amount, w.asset, CODE_WITHDRAWAL, user_data=w.txid))
            else:
                assert dest_vault_id is not None, "an internal movement names the vault it pays"
                dst = self.wallet_account(tx.conn, dest_vault_id, w.asset)
                if w.kind == KIND_SWEEP:
                    # Between a vault's deposit addresses and its own wallet (a sweep, or a gas
                    # top-up to a deposit address): both sides book where deposits are booked
                    # (node.wallets.deposit_book_account), so only the fee moves when that is
                    # the vault wallet itself.
                    own = w.intent.own_destination_paths
                    if w.source_path[:1] == (DEPOSIT_BRANCH,):
                        src = deposit_book_account(self.ledger, tx, w.vault_id, w.asset, body)
                        fee_src_vault_wallet = False
                    if own and own[0][:1] == (DEPOSIT_BRANCH,):
                        dst = deposit_book_account(self.ledger, tx, w.vault_id, w.asset, body)
                if dst != src:
                    ev.append(TransferCreate(f"{w.id}:move", dst, src, w.amount, w.asset, CODE_SWEEP, user_data=w.txid))
            if fee_paid:
                fees = self._account(tx, SYSTEM_OWNER, fee_asset, AccountKind.NETWORK_FEES.value, body)
                fee_src = (self.wallet_account(tx.conn, w.vault_id, fee_asset) if fee_src_vault_wallet
                           else deposit_book_account(self.ledger, tx, w.vault_id, fee_asset, body))
                ev.append(TransferCreate(f"{w.id}:fee", fees, fee_src, fee_paid, fee_asset, CODE_NETWORK_FEE, user_data=w.txid))
            return ev

        return build

    # ---------------------------------------------------------------- screening
    def history(self, conn, sub_account_id: str, asset: str, exclude_id: str, now_ns: int, before_ns: int | None = None) -> rk.History:
        """The customer's withdrawals of `asset` in the windows, counting only those created
        before `before_ns` (each withdrawal is judged by what came before it)."""
        day_from = now_ns - limits.RISK_WINDOW_DAY_S * 1_000_000_000
        month_from = now_ns - limits.RISK_WINDOW_MONTH_S * 1_000_000_000
        rows = conn.execute(select(withdrawals.c.id, withdrawals.c.amount, withdrawals.c.created_at_ns, withdrawals.c.status)
                            .where(and_(withdrawals.c.sub_account_id == sub_account_id, withdrawals.c.asset == asset,
                                        withdrawals.c.kind == KIND_WITHDRAWAL, withdrawals.c.created_at_ns >= month_from))
                            .order_by(withdrawals.c.created_at_ns.desc()).limit(limits.RISK_HISTORY_MAX)).all()
        counted = [r for r in rows if r.id != exclude_id and r.status not in (REJECTED, BLOCKED, CANCELLED, FAILED)
                   and (before_ns is None or r.created_at_ns < before_ns)]
        day = sum(r.amount for r in counted if r.created_at_ns >= day_from)
        month = sum(r.amount for r in counted)
        past = tuple(r.amount for r in counted if r.status == COMPLETED)
        return rk.History(day, month, past)

    def screen(self, w: Withdrawal, *, actor: str = "system:risk") -> Withdrawal:
        """submitted -> pending_approval / queued (allow), pending_screening (hold for review),
        rejected / blocked (deny, the hold voided)."""
        assert w.status == SUBMITTED
        policy = self.policy()
        if w.kind != KIND_WITHDRAWAL:
            decision = rk.Decision(rk.ALLOW, (), 0, policy.version, ("internal movement",))
        else:
            now = self.now_ns()
            with self.store.reading() as conn:
                profile = self._profile(w.sub_account_id, conn)
                wl = conn.execute(select(address_whitelist.c.usable_after_ns).where(and_(
                    address_whitelist.c.sub_account_id == w.sub_account_id, address_whitelist.c.asset == w.asset,
                    address_whitelist.c.address == rk.normalise_address(w.destination)))).first()
                hist = self.history(conn, w.sub_account_id, w.asset, w.id, now, before_ns=w.created_at_ns)
            sanctions = frozenset().union(*(rk.load_list(p) for p in policy.sanctions_files))
            blocked = frozenset().union(*(rk.load_list(p) for p in policy.block_files))
            decision = rk.screen(policy, profile, w.asset, w.amount, w.destination, None if wl is None else wl[0], hist, now,
                                 sanctions, blocked)
        risk = json.dumps(decision.as_json())
        if decision.outcome == rk.DENY:
            to = BLOCKED if decision.blocking else REJECTED
            return self.transition(w, to, decision.reasons[0], actor=actor, ledger_events=self.void_events(w), risk=risk)
        if decision.outcome == rk.HOLD:
            return self.transition(w, PENDING_SCREENING, "held_for_review: " + ",".join(decision.reasons), actor=actor, risk=risk)
        return self._to_approval(w, actor, risk=risk)

    def review(self, wid: str, decision: str, *, actor: str, note: str = "") -> Withdrawal:
        """Staff decide a held withdrawal: "allow" continues to approvals, "deny" rejects it."""
        w = self.get(wid)
        if w.status != PENDING_SCREENING:
            raise WithdrawalError("not_held_for_review", w.status)
        if decision == "allow":
            return self._to_approval(w, actor, extra={"review": {"by": actor, "note": note}})
        if decision == "deny":
            return self.transition(w, REJECTED, "review_denied", actor=actor, ledger_events=self.void_events(w),
                                   extra_body={"review": {"by": actor, "note": note}})
        raise WithdrawalError("decision_invalid", "allow or deny")

    def _to_approval(self, w: Withdrawal, actor: str, extra: dict | None = None, **values) -> Withdrawal:
        needed, delay_s = self._quorum(w)
        if needed == 0:
            return self.transition(w, QUEUED, "auto_approved_within_policy", actor=actor, extra_body=extra,
                                   not_before_ns=self.now_ns() + delay_s * 1_000_000_000, **values)
        return self.transition(w, PENDING_APPROVAL, f"awaiting_approvals: 0 of {needed}", actor=actor, extra_body=extra, **values)

    def _quorum(self, w: Withdrawal) -> tuple[int, int]:
        try:
            # the band counts what the signer peers count: BTC and ETH with their fee_max (issue 14)
            return self.policy().quorum(w.vault_id, w.asset, band_amount(chain_of(w.asset), w.asset, w.amount, w.fee_max))
        except rk.ApprovalRefused as exc:
            raise WithdrawalError(exc.reason, exc.detail) from None

    # ---------------------------------------------------------------- approvals
    def approve(self, wid: str, approver_id: str, signature: bytes, decision: str = "approve",
                approved_at_ms: int | None = None) -> Withdrawal:
        """An approver's Ed25519 signature over the intent (see `approval_message`). Verified
        against the active policy's approver keys; the quorum of the vault and amount band
        moves the withdrawal to queued (cold vaults: not before their delay). A vault with a
        delay takes timed approvals only (`approved_at_ms`, the approver's signed clock, within
        APPROVAL_CLOCK_SKEW_MS_MAX of ours): the signer peers count the delay from those times."""
        if decision not in ("approve", "reject"):
            raise WithdrawalError("decision_invalid", "approve or reject")
        if approved_at_ms is not None and (type(approved_at_ms) is not int or decision != "approve"):
            raise WithdrawalError("approval_time_invalid", "an integer of Unix ms, on approvals only")
        w = self.get(wid)
        if w.status != PENDING_APPROVAL:
            raise WithdrawalError("not_pending_approval", w.status)
        policy = self.policy()
        try:
            policy.verify_approval(approver_id, approval_message(w.intent, decision, approved_at_ms), signature)
        except rk.ApprovalRefused as exc:
            raise WithdrawalError(exc.reason, exc.detail) from None
        needed, delay_s = self._quorum(w)
        if delay_s and decision == "approve" and approved_at_ms is None:
            raise WithdrawalError("approval_time_required", f"vault {w.vault_id} has a {delay_s} s delay")
        if approved_at_ms is not None and abs(approved_at_ms - self.approval_clock_ms()) > limits.APPROVAL_CLOCK_SKEW_MS_MAX:
            raise WithdrawalError("approval_time_out_of_range", f"{approved_at_ms - self.approval_clock_ms()} ms from the node's clock")
        actor = f"approver:{approver_id}"

        def record(tx: WriteTx):
            key = and_(withdrawal_approvals.c.withdrawal_id == wid, withdrawal_approvals.c.approver_id == approver_id)
            if tx.conn.execute(select(withdrawal_approvals.c.approver_id).where(key)).first() is not None:
                raise WithdrawalError("already_decided_by_approver", approver_id)
            n = tx.conn.execute(select(withdrawal_approvals.c.approver_id).where(withdrawal_approvals.c.withdrawal_id == wid)).all()
            if len(n) >= limits.WITHDRAWAL_APPROVALS_MAX:
                raise WithdrawalError("too_many_approvals")
            tx.conn.execute(withdrawal_approvals.insert(), {"withdrawal_id": wid, "approver_id": approver_id, "decision": decision,
                                                            "signature": signature.hex(), "created_at_ns": tx.now_ns(),
                                                            "approved_at_ms": approved_at_ms})
            approved = {r.approver_id: r.approved_at_ms for r in tx.conn.execute(
                select(withdrawal_approvals.c.approver_id, withdrawal_approvals.c.approved_at_ms).where(and_(
                    withdrawal_approvals.c.withdrawal_id == wid, withdrawal_approvals.c.decision == "approve")))
                if r.approver_id in policy.approvers}
            return approved

        # The approval row and the status change commit in one write.
        def fn(tx: WriteTx):
            approved = record(tx)
            count = len(approved)
            body = {"withdrawal": wid, "approver": approver_id, "decision": decision, "approvals": count, "needed": needed}
            cur = Withdrawal.from_row(tx.conn.execute(select(withdrawals).where(withdrawals.c.id == wid)).one())
            if cur.status != PENDING_APPROVAL:
                raise StaleStatus(wid)
            if decision == "reject":
                events = self.void_events(cur)
                if events:
                    self.ledger.apply_transfers(tx, events(tx, body), body)
                to, sub, values = REJECTED, f"rejected_by_approver: {approver_id}", {}
            elif count >= needed:
                # The delay runs from the quorum: the node's clock, or the quorum's signed time
                # when later (what the peers count from), whichever ends last.
                times = sorted(t for t in approved.values() if t is not None)
                start_ns = max(self.now_ns(), times[needed - 1] * 1_000_000 if delay_s and needed and len(times) >= needed else 0)
                to, sub, values = QUEUED, f"approved: {count} of {needed}", {"not_before_ns": start_ns + delay_s * 1_000_000_000}
                if delay_s:
                    sub += f"; cold delay {delay_s} s"
            else:
                to, sub, values = PENDING_APPROVAL, f"awaiting_approvals: {count} of {needed}", {}
            tx.conn.execute(withdrawals.update().where(withdrawals.c.id == wid).values(
                status=to, sub_status=sub, updated_at_ns=tx.next_timestamp_ns(), **values))
            body["to"] = to
            return Withdrawal.from_row(tx.conn.execute(select(withdrawals).where(withdrawals.c.id == wid)).one()), body

        return self.store.write(actor, "withdrawal.approval", fn)

    def cancel(self, wid: str, *, actor: str) -> Withdrawal:
        w = self.get(wid)
        if w.status not in CANCELLABLE:
            raise WithdrawalError("not_cancellable", w.status)
        return self.transition(w, CANCELLED, "cancelled_by_client", actor=actor, ledger_events=self.void_events(w))
