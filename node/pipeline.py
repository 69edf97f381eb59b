"""The withdrawal pipeline worker: one step per status, each idempotent and recorded before its
side effect, so that a process killed at any point resumes from the recorded state.

    submitted          screen (risk) -> pending_approval / queued / held / rejected / blocked
    queued             build the unsigned transaction (the chain adapter's build is idempotent
                       per intent id) and record it -> pending_signature
    pending_signature  sign it through the cluster (approvals attached; every peer re-checks),
                       attach the signatures, record the signed bytes and txid -> broadcasting
    broadcasting       broadcast the recorded bytes (never re-signed: the same transaction)
                       -> confirming
    confirming         at the confirmation depth: post the hold, book the fee -> completed;
                       dropped from the mempool: back to broadcasting (the same bytes);
                       unmined past `stuck_age_s`: a fee bump -> pending_signature (below)

Fee bumping: the adapter builds a replacement of the same intent (bitcoin RBF: same inputs and
payments, fee from the change; ethereum: same nonce, higher fee caps), recorded as the new
unsigned transaction; the cluster signs it against the same approved intent (fee within
fee_max); its txid is appended to `txids` before broadcast. Every version spends the same
inputs (nonce), so at most one is mined; `confirming` completes with whichever it is, booking
that version's fee. At most WITHDRAWAL_FEE_BUMPS_MAX bumps, then `needs_staff`. A signing
refusal of a replacement never fails the withdrawal (the earlier version may still be mined):
it returns to confirming with `needs_staff`.

A crash between a side effect and its record is safe: the build is idempotent per intent id;
a signature not recorded was never broadcast (signing again is harmless); a broadcast not
recorded is found by `status(txid)` or re-broadcast with the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable

from node import limits
from node import withdrawals as wd
from node.log import get as get_log
from node.ports import (TX_CONFIRMED, TX_FAILED, TX_MEMPOOL, TX_UNKNOWN, ChainAdapter, SignedTransaction, SigningCluster,
                        SigningRefused, TxStatus, UnsignedTransaction, WithdrawalIntent)

log = get_log("node.pipeline")

# Refusals that retrying cannot change: the withdrawal fails (its hold is voided).
PERMANENT_REFUSALS = ("approvals_below_quorum", "approval_signature_invalid", "transaction_does_not_match_intent",
                      "amount_exceeds_policy", "asset_not_allowed", "destination_not_whitelisted", "intent_vault_mismatch",
                      "transaction_chain_mismatch", "request_malformed", "chain_not_supported", "vault_unknown",
                      "own_destination_vault_unknown")
# A peer's own cold-vault delay has not ended (its clock or policy runs later than ours): wait
# and ask again; it ends by itself, so it never counts toward the attempts.
DELAY_REFUSAL = "delay_not_elapsed"
PERMANENT_BUILD_ERRORS = ("asset_not_supported", "amount_below_dust", "fee_exceeds_max", "intent_wrong_chain",
                          "payments_count_out_of_range", "invalid_address", "address_invalid")

ACTOR = "system:pipeline"
NEEDS_STAFF = "needs_staff"  # a signed withdrawal the pipeline stopped retrying: staff decide


class Pipeline:
    """`chains`: chain -> ChainAdapter; `cluster`: the SigningCluster; `confirmations`: chain ->
    depth at which a withdrawal completes; `fee_of(chain, txid, intent_id)`: the fee the mined
    transaction paid (base units of the chain's fee asset). `crash_at` (tests only): the process
    SIGKILLs itself at that point, e.g. "after:pending_signature" or "before_record:broadcast".
    `replacement_of(chain, intent)`: the adapter's fee-bumped replacement of the intent's latest
    transaction (None: no fee bumping); `stuck_age_s`: how long a version may sit unmined."""

    def __init__(self, withdrawals: wd.Withdrawals, chains: dict[str, ChainAdapter], cluster: SigningCluster,
                 confirmations: dict[str, int], fee_of: Callable[[str, str, str], int], *, crash_at: str | None = None,
                 replacement_of: Callable[[str, WithdrawalIntent], UnsignedTransaction] | None = None,
                 stuck_age_s: float = limits.WITHDRAWAL_STUCK_AGE_S):
        assert stuck_age_s > 0
        self.replacement_of = replacement_of
        self.stuck_age_ns = int(stuck_age_s * 1_000_000_000)
        self.w = withdrawals
        self.chains = chains
        self.cluster = cluster
        self.confirmations = confirmations
        self.fee_of = fee_of
        self.crash_at = crash_at
        self._stop = threading.Event()
        self.steps = {
            wd.SUBMITTED: self.step_screen,
            wd.QUEUED: self.step_build,
            wd.PENDING_SIGNATURE: self.step_sign,
            wd.BROADCASTING: self.step_broadcast,
            wd.CONFIRMING: self.step_confirm,
        }

    # ---------------------------------------------------------------- test crash points
    def _crash(self, point: str) -> None:
        if self.crash_at == point:
            log.warning("crash_point", point=point)
            os.kill(os.getpid(), signal.SIGKILL)

    def _moved(self, w: wd.Withdrawal) -> wd.Withdrawal:
        self._crash(f"after:{w.status}")
        return w

    # ---------------------------------------------------------------- loop
    def run_once(self) -> int:
        """One pass over every active status (bounded batches). Returns how many steps ran."""
        n = 0
        for status, step in self.steps.items():
            for w in self.w.with_status(status, limits.WITHDRAWAL_BATCH_MAX):
                try:
                    if step(w) is not None:
                        n += 1
                except wd.StaleStatus:
                    continue  # someone else moved it: the next pass sees its new state
        return n

    def run_forever(self, poll_s: float = limits.WITHDRAWAL_WORKER_POLL_S) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # a chain node or the database down: log, wait, retry (bounded by the poll)
                log.exception("pipeline_pass_failed")
                busy = 0
            if not busy:
                self._stop.wait(poll_s)

    def stop(self) -> None:
        self._stop.set()

    # ---------------------------------------------------------------- steps
    def step_screen(self, w: wd.Withdrawal):
        return self._moved(self.w.screen(w))

    def step_build(self, w: wd.Withdrawal):
        if w.not_before_ns > self.w.now_ns():
            return None  # a cold vault's delay
        chain = self.chains[w.chain]
        try:
            # Ethereum: the sender. A sweep on bitcoin: only the coins at its deposit address.
            source = w.source_path if w.chain == "ethereum" or w.kind == wd.KIND_SWEEP else None
            utx = chain.build_withdrawal(w.intent, source_path=source)
        except Exception as exc:  # noqa: BLE001 - ChainError from the adapter (named reason) or the node down
            reason = getattr(exc, "reason", type(exc).__name__)
            if reason in PERMANENT_BUILD_ERRORS or w.attempts + 1 >= limits.WITHDRAWAL_BROADCAST_ATTEMPTS_MAX:
                return self._fail(w, f"build_failed: {reason}")
            return self.w.transition(w, wd.QUEUED, f"build_retry: {reason}", actor=ACTOR, attempts=w.attempts + 1)
        self._crash("before_record:build")
        return self._moved(self.w.transition(w, wd.PENDING_SIGNATURE, "built", actor=ACTOR,
                                             unsigned_tx=wd.unsigned_to_json(utx), attempts=0))

    def step_sign(self, w: wd.Withdrawal):
        if w.not_before_ns > self.w.now_ns():
            return None  # a peer asked us to wait out its delay
        chain = self.chains[w.chain]
        utx = w.unsigned()
        assert utx is not None, "pending_signature without its unsigned transaction"
        intent = w.intent
        vault = self.w.vault(w.vault_id)
        try:
            pairs = self.cluster.sign(vault, utx, intent, self.w.signing_approvals(w))
        except SigningRefused as exc:
            reason = exc.reason.split(":")[0]
            log.warning("signing_refused", withdrawal=w.id, reason=exc.reason, culprits=",".join(exc.culprits))
            if reason == DELAY_REFUSAL:
                return self.w.transition(w, wd.PENDING_SIGNATURE, f"waiting_for_peer_delay: {exc.reason}", actor=ACTOR,
                                         not_before_ns=self.w.now_ns() + limits.WITHDRAWAL_PEER_DELAY_RETRY_S * 1_000_000_000)
            if reason in PERMANENT_REFUSALS or w.attempts + 1 >= limits.WITHDRAWAL_SIGN_ATTEMPTS_MAX:
                if w.signed_raw is not None:
                    # A fee bump refused: the earlier version is signed and may still be mined, so
                    # never void the hold; keep confirming it and call staff.
                    return self.w.transition(w, wd.CONFIRMING, f"{NEEDS_STAFF}: fee_bump_refused: {exc.reason}", actor=ACTOR,
                                             attempts=0)
                return self._fail(w, f"signing_refused: {exc.reason}")
            return self.w.transition(w, wd.PENDING_SIGNATURE, f"signing_retry: {exc.reason}", actor=ACTOR, attempts=w.attempts + 1)
        signed = chain.attach_signatures(utx, [sig for _, sig in pairs], intent)
        versions = _versions(w)
        txids = versions if signed.txid in versions else versions + (signed.txid,)
        assert len(txids) <= 1 + limits.WITHDRAWAL_FEE_BUMPS_MAX, f"{w.id}: {len(txids)} versions"
        self._crash("before_record:sign")
        return self._moved(self.w.transition(w, wd.BROADCASTING, "signed" if len(txids) == 1 else f"signed_replacement: {len(txids) - 1}",
                                             actor=ACTOR, signed_raw=signed.raw.hex(), txid=signed.txid, attempts=0,
                                             txids=json.dumps(list(txids))))

    def step_broadcast(self, w: wd.Withdrawal):
        if w.sub_status.startswith(NEEDS_STAFF):
            return None
        chain = self.chains[w.chain]
        assert w.signed_raw is not None and w.txid, "broadcasting without the signed bytes"
        signed = SignedTransaction(w.chain, w.network, w.txid, w.signed_raw)
        status = chain.status(w.txid)
        if status.state == TX_UNKNOWN and self._mined_earlier(w) is not None:
            # An earlier version was mined while its replacement was being signed: confirm that one.
            return self._moved(self.w.transition(w, wd.CONFIRMING, "earlier_version_mined", actor=ACTOR, attempts=0))
        if status.state == TX_UNKNOWN:
            try:
                chain.broadcast(signed)
            except Exception as exc:  # noqa: BLE001 - the node refused or is unreachable
                # It may have arrived anyway (a timeout after acceptance): look again first.
                if chain.status(w.txid).state == TX_UNKNOWN:
                    reason = getattr(exc, "reason", type(exc).__name__)
                    log.warning("broadcast_failed", withdrawal=w.id, txid=w.txid, error=str(exc)[:300])
                    if w.attempts + 1 >= limits.WITHDRAWAL_BROADCAST_ATTEMPTS_MAX:
                        # Signed bytes exist and could still be mined: never void the hold here
                        # (funds could leave unbooked). Stop retrying and call staff.
                        return self.w.transition(w, wd.BROADCASTING, f"{NEEDS_STAFF}: broadcast_failed: {reason}",
                                                 actor=ACTOR, attempts=w.attempts + 1)
                    return self.w.transition(w, wd.BROADCASTING, f"broadcast_retry: {reason}", actor=ACTOR, attempts=w.attempts + 1)
        self._crash("before_record:broadcast")
        return self._moved(self.w.transition(w, wd.CONFIRMING, "in_mempool", actor=ACTOR, attempts=0,
                                             broadcast_at_ns=self.w.now_ns()))

    def step_confirm(self, w: wd.Withdrawal):
        chain = self.chains[w.chain]
        st = chain.status(w.txid)
        if st.state not in (TX_CONFIRMED, TX_FAILED):
            earlier = self._mined_earlier(w)
            if earlier is not None:  # an earlier version won: it is the one confirmed and booked
                w, st = dataclasses.replace(w, txid=earlier.txid), earlier
        if st.state == TX_UNKNOWN:
            # Dropped (or a reorg took it out and the node forgot it): the same bytes again.
            return self.w.transition(w, wd.BROADCASTING, "dropped_rebroadcast", actor=ACTOR)
        if st.state == TX_FAILED:
            fee = self.fee_of(w.chain, w.txid, w.id)
            return self._fail(w, "reverted_on_chain", fee_paid=fee)
        if st.state != TX_CONFIRMED or st.confirmations < self.confirmations[w.chain]:
            if st.state == TX_MEMPOOL:
                if w.sub_status.startswith(NEEDS_STAFF):
                    return None
                bumped = self._bump_if_stuck(w)
                if bumped is not None:
                    return bumped
            sub = f"confirmations: {st.confirmations} of {self.confirmations[w.chain]}"
            return None if sub == w.sub_status else self.w.transition(w, wd.CONFIRMING, sub, actor=ACTOR)
        fee = self.fee_of(w.chain, w.txid, w.id)
        assert type(fee) is int and 0 <= fee <= w.fee_max, f"fee {fee!r} outside 0..fee_max {w.fee_max}"
        dest_vault = self._dest_vault(w)
        self._crash("before_record:complete")
        return self._moved(self.w.transition(w, wd.COMPLETED, f"confirmations: {st.confirmations}", actor=ACTOR, fee_paid=fee,
                                             txid=w.txid, ledger_events=self.w.completion_events(w, fee, dest_vault)))

    # ---------------------------------------------------------------- fee bumping
    def _mined_earlier(self, w: wd.Withdrawal) -> TxStatus | None:
        """The status of an earlier signed version that was mined (or reverted on chain), if any."""
        chain = self.chains[w.chain]
        for txid in _versions(w):
            if txid != w.txid:
                st = chain.status(txid)
                if st.state in (TX_CONFIRMED, TX_FAILED):
                    return st
        return None

    def _bump_if_stuck(self, w: wd.Withdrawal) -> wd.Withdrawal | None:
        """Unmined past the age: record the replacement (-> pending_signature), or call staff
        once the bumps are spent or the adapter refuses (fee_max reached, no change left)."""
        if self.replacement_of is None or w.broadcast_at_ns is None:
            return None
        if self.w.now_ns() - w.broadcast_at_ns < self.stuck_age_ns:
            return None
        bumps = len(_versions(w)) - 1
        if bumps >= limits.WITHDRAWAL_FEE_BUMPS_MAX:
            return self.w.transition(w, wd.CONFIRMING, f"{NEEDS_STAFF}: unmined after {bumps} fee bumps", actor=ACTOR)
        try:
            utx = self.replacement_of(w.chain, w.intent)
        except Exception as exc:
            reason = getattr(exc, "reason", None)
            if reason is None:
                raise  # the node down: the next pass tries again
            log.warning("fee_bump_refused", withdrawal=w.id, txid=w.txid, reason=str(exc)[:300])
            return self.w.transition(w, wd.CONFIRMING, f"{NEEDS_STAFF}: fee_bump_failed: {reason}", actor=ACTOR)
        log.info("fee_bump", withdrawal=w.id, txid=w.txid, bump=bumps + 1)
        # A crash before this record leaves an unrecorded replacement in the adapter: the next
        # pass builds another one on top of it (a higher fee, still within fee_max); nothing is
        # signed or broadcast that is not recorded here first.
        self._crash("before_record:fee_bump")
        return self._moved(self.w.transition(w, wd.PENDING_SIGNATURE, f"fee_bump: {bumps + 1} of {limits.WITHDRAWAL_FEE_BUMPS_MAX}",
                                             actor=ACTOR, unsigned_tx=wd.unsigned_to_json(utx), attempts=0))

    # ---------------------------------------------------------------- helpers
    def _fail(self, w: wd.Withdrawal, reason: str, fee_paid: int | None = None) -> wd.Withdrawal:
        """Ends a withdrawal that cannot proceed: hold voided; a reverted ethereum transaction
        still paid its fee, which is booked."""
        events = self.w.void_events(w)
        if fee_paid:
            fee_build = self.w.completion_events(w, fee_paid, self._dest_vault(w))

            def both(tx, body):
                fee_events = [e for e in fee_build(tx, body) if e.id.endswith(":fee")]
                return (events(tx, body) if events else []) + fee_events

            return self.w.transition(w, wd.FAILED, reason, actor=ACTOR, ledger_events=both, fee_paid=fee_paid)
        if w.status == wd.QUEUED or (w.status == wd.PENDING_SIGNATURE and w.signed_raw is None):
            release = getattr(self.chains[w.chain], "release", None)
            if release is not None and w.chain == "bitcoin":
                release(w.id)  # its coins become spendable again
        return self.w.transition(w, wd.FAILED, reason, actor=ACTOR, ledger_events=events)

    def _dest_vault(self, w: wd.Withdrawal) -> str | None:
        if w.kind == wd.KIND_WITHDRAWAL:
            return None
        if w.kind == wd.KIND_SWEEP:
            return w.vault_id
        # rebalance / refill: the destination is the other vault's wallet; its id is in the external id
        return w.external_id.split("|", 1)[0]


def _versions(w: wd.Withdrawal) -> tuple[str, ...]:
    """Every signed version's txid, oldest first (rows signed before fee bumping existed: the one)."""
    return w.txids or ((w.txid,) if w.txid else ())


def wait_steps(pipeline: Pipeline, predicate, timeout_s: float, what: str) -> None:
    """Runs passes until `predicate()` holds (tests and the CLI's --until); a deadline always."""
    deadline = time.monotonic() + timeout_s
    while True:
        pipeline.run_once()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(limits.WITHDRAWAL_WORKER_POLL_S)
