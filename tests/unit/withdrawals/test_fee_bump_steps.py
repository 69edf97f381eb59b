"""The pipeline's fee-bump decisions over a real store (SQLite and PostgreSQL), with a fake chain
and cluster standing in for one function each (the real btcd and signer cluster run in
tests/functional/withdrawals/test_fee_bump.py): bounded bumps then needs_staff, refusals of a
replacement never void the hold, and an earlier version that gets mined is the one completed."""

from __future__ import annotations

import pytest

from node.pipeline import Pipeline
from node.ports import TX_CONFIRMED, TX_MEMPOOL, TX_UNKNOWN, InputKey, SignedTransaction, SigningRefused, TxStatus, UnsignedTransaction
from node import limits
from tests.unit.withdrawals.test_state_machine import DEST, available, wd  # noqa: F401 - the store fixture


class Refused(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class FakeChain:
    """One function each: a transaction per build (its payload byte numbers it), a fee of 100 x
    that number, mempool on broadcast, states set by the test."""
    chain = "bitcoin"

    def __init__(self):
        self.built = 0
        self.states: dict[str, TxStatus] = {}
        self.fees: dict[str, int] = {}
        self.refuse_bump: str | None = None

    def build_withdrawal(self, intent, source_path=None):
        self.built += 1
        return UnsignedTransaction("bitcoin", "regtest", bytes([self.built]), (InputKey((0, 0), 50_000),), ())

    def replacement_of(self, chain, intent):
        if self.refuse_bump:
            raise Refused(self.refuse_bump)
        return self.build_withdrawal(intent)

    def attach_signatures(self, utx, sigs, intent):
        txid = f"{utx.payload[0]:064x}"
        self.fees[txid] = 100 * utx.payload[0]
        return SignedTransaction("bitcoin", "regtest", txid, b"raw" + utx.payload)

    def status(self, txid):
        return self.states.get(txid, TxStatus(txid, TX_UNKNOWN))

    def broadcast(self, signed):
        self.states[signed.txid] = TxStatus(signed.txid, TX_MEMPOOL)
        return signed.txid


class FakeCluster:
    def __init__(self):
        self.refuse: str | None = None

    def sign(self, vault, utx, intent, approvals):
        if self.refuse:
            raise SigningRefused(self.refuse, ("peer-2",))
        return [("peer-1:0", b"\x01" * 64)]


def pipeline(wd, chain, cluster):  # noqa: F811
    return Pipeline(wd, {"bitcoin": chain}, cluster, {"bitcoin": 1}, lambda c, txid, wid: chain.fees[txid],
                    replacement_of=chain.replacement_of, stuck_age_s=1e-9)  # always "stuck": the age is the test's


def start(wd, chain, cluster, ext):  # noqa: F811
    _, w = wd.submit("zoe.main", ext, "BTC", DEST, 900, vault_id="hot", actor="client:zoe")
    p = pipeline(wd, chain, cluster)
    return p, w


def test_bumps_are_bounded_then_staff_and_an_earlier_version_mined_completes(wd):  # noqa: F811
    chain, cluster = FakeChain(), FakeCluster()
    p, w = start(wd, chain, cluster, "b-1")
    for _ in range(limits.WITHDRAWAL_FEE_BUMPS_MAX + 3):
        p.run_once()
    cur = wd.get(w.id)
    assert (cur.status, cur.sub_status) == ("confirming", f"needs_staff: unmined after {limits.WITHDRAWAL_FEE_BUMPS_MAX} fee bumps")
    assert len(cur.txids) == 1 + limits.WITHDRAWAL_FEE_BUMPS_MAX and cur.txid == cur.txids[-1]
    assert available(wd) == 2_000_000 - 900, "the hold stands"
    assert p.run_once() == 0, "waiting for staff: no step"
    # The FIRST version is mined after all: it is the one completed, with its own fee.
    first = cur.txids[0]
    chain.states[first] = TxStatus(first, TX_CONFIRMED, 1, 101)
    p.run_once()
    done = wd.get(w.id)
    assert (done.status, done.txid, done.fee_paid) == ("completed", first, chain.fees[first])


@pytest.mark.parametrize("who, reason, sub_status", [
    ("adapter", "fee_exceeds_max", "needs_staff: fee_bump_failed: fee_exceeds_max"),
    ("cluster", "transaction_does_not_match_intent", "needs_staff: fee_bump_refused: transaction_does_not_match_intent"),
])
def test_a_refused_replacement_keeps_confirming_the_signed_version(wd, who, reason, sub_status):  # noqa: F811
    chain, cluster = FakeChain(), FakeCluster()
    p, w = start(wd, chain, cluster, f"r-{who}")
    if who == "adapter":
        chain.refuse_bump = reason
    else:
        p.steps.pop("confirming")
        p.run_once()  # up to confirming, not yet bumped
        del p.steps  # the full machine again
        p = pipeline(wd, chain, cluster)
        cluster.refuse = reason
    for _ in range(3):
        p.run_once()
    cur = wd.get(w.id)
    assert (cur.status, cur.sub_status) == ("confirming", sub_status)
    assert len(cur.txids) == 1, "no second version signed"
    assert available(wd) == 2_000_000 - 900, "never voided: the signed version may still be mined"
    chain.states[cur.txid] = TxStatus(cur.txid, TX_CONFIRMED, 1, 101)
    p.run_once()
    assert wd.get(w.id).status == "completed"


def test_a_peers_delay_refusal_waits_without_spending_attempts_then_signs(wd):  # noqa: F811
    import time

    chain, cluster = FakeChain(), FakeCluster()
    p, w = start(wd, chain, cluster, "d-1")
    p.replacement_of = None  # no fee bumping here
    calls = []
    sign = cluster.sign
    cluster.sign = lambda *a: calls.append(1) or sign(*a)
    cluster.refuse = "delay_not_elapsed: 3000 ms left of 4 s after the quorum"
    for _ in range(3):
        p.run_once()
    cur = wd.get(w.id)
    assert (cur.status, cur.attempts, len(calls)) == ("pending_signature", 0, 1), (cur, calls)
    assert cur.sub_status.startswith("waiting_for_peer_delay: delay_not_elapsed"), cur.sub_status
    assert cur.not_before_ns > time.time_ns(), "asks again only after the retry wait"
    cluster.refuse = None
    wd.now_ns = lambda: time.time_ns() + (limits.WITHDRAWAL_PEER_DELAY_RETRY_S + 1) * 1_000_000_000
    p.run_once()
    assert (wd.get(w.id).status, len(calls)) == ("confirming", 2)
