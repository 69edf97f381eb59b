"""A signer process SIGKILLed in the middle of a withdrawal's signing session (not before it
starts): the session aborts with that peer named, the coordinator retries with the other
quorum, and the withdrawal completes exactly once. Real processes throughout; the node's
pipeline drives the withdrawal in its own thread while the test kills the peer.

Test fault, said here: the victim runs with `hold_at_round = 4` (environment = "test" only), so
that it stops sending after it entered round 4 of the signing session and the kill lands
mid-round deterministically instead of racing a ~1 s ceremony. One store is enough: this is
about the cluster, and the exactly-once bookkeeping it exercises is the same code on both."""

from __future__ import annotations

import signal
import threading

import pytest

from tests.functional.withdrawals.conftest import BTC
from tests.support.procs import wait_until

pytestmark = pytest.mark.functional

COORDINATOR = "peer-1"  # the node's first coordinator
VICTIM = "peer-2"  # the coordinator's first choice of co-signer (tests/functional/cluster shows it)


def log_lines(cluster, name: str, event: str) -> list[str]:
    return [ln for ln in cluster.stderr(name).splitlines() if event in ln]


@pytest.mark.parametrize("node", ["sqlite"], indirect=True)
def test_a_signer_killed_mid_round_is_named_and_the_other_quorum_signs_once(node):
    s = node.shared
    c = s.cluster
    sub = node.customer(f"kill-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = s.btc_destination()
    node.whitelist(sub, "BTC", dest)
    c.procs[VICTIM].stop()
    c.make_rogue(VICTIM, {"hold_at_round": 4, "protocol": "sign"})  # the test-only rogue class: stalls at round 4
    c.start(VICTIM)
    aborted_before = c.metric(COORDINATOR, "custody_signer_aborts_total", protocol="sign", culprit=VICTIM)
    signed_before = len(log_lines(c, COORDINATOR, "] signed "))
    aborted_lines_before = len(log_lines(c, COORDINATOR, "] attempt_aborted "))
    holds_before = c.stderr(VICTIM).count("fault_hold")
    result: dict = {}

    def drive():
        try:
            result["done"] = node.drive(w.id, "completed", timeout_s=180)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            result["error"] = exc

    _, w = node.withdrawals.submit(sub, "kill-1", "BTC", dest, 2_500_000, vault_id="hot", actor=f"client:{sub}")
    t = threading.Thread(target=drive, name="pipeline")
    try:
        t.start()
        wait_until(lambda: c.stderr(VICTIM).count("fault_hold") > holds_before or not t.is_alive(), 120,
                   f"{VICTIM} is inside round 4 of the withdrawal's signing session")
        assert t.is_alive(), f"the pipeline finished before {VICTIM} was in the session: {result}"
        assert node.withdrawals.get(w.id).status == "pending_signature", "killed while the withdrawal is being signed"
        c.procs[VICTIM].kill(signal.SIGKILL)
        t.join(200)
        assert not t.is_alive(), "the pipeline is still waiting"
    finally:
        c.set_faults(VICTIM, None)
        if t.is_alive():
            t.join(200)
        c.procs[VICTIM].stop()
        c.start(VICTIM)
    if "error" in result:
        raise result["error"]
    done = result["done"]
    # The aborted session named the killed peer; the retry signed with the other quorum.
    assert c.metric(COORDINATOR, "custody_signer_aborts_total", protocol="sign", culprit=VICTIM) == aborted_before + 1
    aborted = log_lines(c, COORDINATOR, "] attempt_aborted ")[aborted_lines_before:]
    assert len(aborted) == 1 and f"culprits={VICTIM}" in aborted[0] and "attempt=1" in aborted[0], aborted
    signed = log_lines(c, COORDINATOR, "] signed ")[signed_before:]
    assert len(signed) == 1 and "attempt=2" in signed[0] and "quorum=peer-1,peer-3" in signed[0], signed
    # Exactly once: one transaction paid, one completion, the ledger whole.
    assert (done.status, s.received_btc(dest)) == ("completed", [(done.txid, 2_500_000)]), done
    assert node.customers.available(sub, "BTC") == BTC - 2_500_000
    node.check_ledger()
