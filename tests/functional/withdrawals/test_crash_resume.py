"""The node killed with SIGKILL in each state, and restarted: the withdrawal completes exactly
once and the ledger checker passes. The worker is a real `custody withdrawals worker` process;
its test-only crash point (`CUSTODY_TEST_CRASH_AT`, refused outside environment = "test")
SIGKILLs it right after it recorded a state ("after:<status>") or right after a side effect
and before its record ("before_record:<step>": built, signed, broadcast, confirmed but not yet
recorded). Each restart resumes from the recorded state and goes one point further. Bitcoin
and Ethereum each run on SQLite and on PostgreSQL: bitcoin killed at every point on SQLite,
ethereum at every point on PostgreSQL, and each at every before-record point on the other store
(`STORIES`)."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.functional.withdrawals.conftest import BTC, ETH, ROOT
from tests.support import nodes
from tests.support.procs import Proc, tail, wait_until

pytestmark = pytest.mark.functional



def worker_config(node, path):
    s = node.shared
    pw = path.with_name("btc-rpc-password")
    pw.write_text(nodes.BTCD_RPC_PASSWORD)
    schema = f'database_schema = "{node.schema}"\n' if node.schema else ""
    path.write_text(f"""environment = "test"
database_url = "{node.url}"
{schema}chain_state_url = "{node.chain_state_url}"
cluster_file = "{s.cluster.dir / 'cluster.json'}"
[confirmations]
bitcoin = 1
ethereum = 1
[bitcoin]
network = "regtest"
rpc_url = "{s.btcd.url}"
rpc_user = "{nodes.BTCD_RPC_USER}"
rpc_password_file = "{pw}"
fee_rate_fallback_sat_vb = 2
deposit_confirmations = 1
[ethereum]
chain_id = {nodes.Anvil.CHAIN_ID}
rpc_url = "{s.anvil.url}"
deposit_confirmations = 1
max_fee_per_gas_fallback_wei = {50 * 10**9}
max_priority_fee_per_gas_fallback_wei = {2 * 10**9}
""")
    return path


def run_worker(node, config, crash_at, n):
    env = {"PYTHONPATH": str(ROOT), "CUSTODY_LOG_LEVEL": "info"}
    if crash_at:
        env["CUSTODY_TEST_CRASH_AT"] = crash_at
    return Proc(f"worker-{n}", [sys.executable, "-m", "api.cli", "withdrawals", "worker", "--config", config],
                node.workdir / "workers", env=env).start()


@pytest.fixture
def no_timelock(node):
    """The worker screens with the real clock: whitelist entries made here carry no time-lock
    (a policy version without it, through the approval flow), restored afterwards."""
    node.change_policy(timelock_s=0)
    yield node
    node.change_policy()


def drive_with_crashes(node, wid, points, mine):
    config = worker_config(node, node.workdir / "worker.toml")
    seen = []
    for n, point in enumerate(points + [None]):
        p = run_worker(node, config, point, n)
        try:
            def progressed():
                w = node.withdrawals.get(wid)
                if w.status == "confirming":
                    mine()
                if not p.alive():
                    return True
                return point is None and w.status in ("completed", "failed")

            wait_until(progressed, 120, f"worker with crash point {point} dies there (or completes)")
            if point is not None:
                assert p.popen.returncode == -signal.SIGKILL, (
                    f"worker {point}: exited {p.popen.returncode}, not killed at its point:\n{tail(p.stderr_path)}")
            seen.append((point, node.withdrawals.get(wid).status))
        finally:
            p.stop()
    return seen


# Every crash point of the pipeline, in the order a withdrawal meets them.
POINTS = ["after:queued", "before_record:build", "after:pending_signature", "before_record:sign", "after:broadcasting",
          "before_record:broadcast", "after:confirming", "before_record:complete"]
# A side effect done and not yet recorded: where the store's atomicity decides exactly-once.
BEFORE_RECORD = [p for p in POINTS if p.startswith("before_record:")]
# Within the suite's time budget (each point is a worker start): every chain on both stores;
# each chain killed at every point on one store, and at every side-effect-before-record point
# on the other (resuming from a recorded state is the same read on both).
STORIES = {("bitcoin", "sqlite"): POINTS, ("bitcoin", "postgres"): BEFORE_RECORD,
           ("ethereum", "postgres"): POINTS, ("ethereum", "sqlite"): BEFORE_RECORD}


def drive_story(node, sub, external_id, asset, dest, amount, mine):
    _, w = node.withdrawals.submit(sub, external_id, asset, dest, amount, vault_id="hot", actor=f"client:{sub}")
    seen = drive_with_crashes(node, w.id, STORIES[(w.chain, node.kind)], mine)
    done = node.withdrawals.get(w.id)
    assert done.status == "completed", (done.status, done.sub_status, seen)
    return done


# Both chains on both stores (the `node` fixture is parametrized over SQLite and PostgreSQL).
def test_btc_withdrawal_killed_in_every_state_completes_exactly_once(no_timelock):
    node = no_timelock
    s = node.shared
    sub = node.customer(f"crash-btc-{node.kind}")
    node.fund(sub, "BTC", BTC)
    dest = s.btc_destination()
    node.whitelist(sub, "BTC", dest)
    done = drive_story(node, sub, "crash-1", "BTC", dest, 3_000_000, lambda: s.btcd.generate(1))
    assert s.received_btc(dest) == [(done.txid, 3_000_000)], "exactly one transaction paid the destination"
    assert node.customers.available(sub, "BTC") == BTC - 3_000_000
    node.check_ledger()


def test_eth_withdrawal_killed_in_every_state_completes_exactly_once(no_timelock):
    node = no_timelock
    s = node.shared
    sub = node.customer(f"crash-eth-{node.kind}")
    node.fund(sub, "ETH", ETH)
    dest = s.eth_destination()
    node.whitelist(sub, "ETH", dest)
    hot = node.eth.address("hot", (2, 0))
    nonce_before = s.w3.eth.get_transaction_count(hot, "latest")
    done = drive_story(node, sub, "crash-eth-1", "ETH", dest, ETH // 50, lambda: s.anvil.mine(1))
    assert s.w3.eth.get_balance(dest) == ETH // 50, "paid exactly once"
    assert s.w3.eth.get_transaction_count(hot, "latest") == nonce_before + 1, "one transaction of the hot wallet mined"
    assert s.w3.eth.get_transaction_receipt(done.txid)["status"] == 1
    assert node.customers.available(sub, "ETH") == ETH - ETH // 50
    node.check_ledger()
