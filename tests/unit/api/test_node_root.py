"""The node's config loader refuses what it cannot run, naming the field; `Serialised` holds
its adapter's lock for every call; a `Worker` survives a failing pass and stops on its event."""

from __future__ import annotations

import threading

import pytest

from api.node_root import Serialised, Worker, load_config
from api.withdrawals_root import ConfigError
from tests.support.procs import wait_until

BASE = """environment = "test"
database_url = "sqlite:///x.db"
chain_state_url = "sqlite:///c.db"
cluster_file = "cluster.json"
[confirmations]
bitcoin = 1
"""


@pytest.mark.parametrize(
    "extra, error",
    [
        ("", None),
        ("[api]\nport = 8081\n[workers]\nscan_every_s = 1\nrebalance_every_s = 0\n", None),
        ("[api]\nport = 70000\n", "api.port"),
        ('[api]\nport = "8080"\n', "api.port"),
        ("[workers]\nmystery_every_s = 1\n", "unknown worker"),
        ("[workers]\nscan_every_s = -1\n", "workers.scan_every_s"),
        ("[workers]\nscan_every_s = true\n", "workers.scan_every_s"),
        ("[workers]\npipeline_every_s = 100000\n", "workers.pipeline_every_s"),
        ('vaults_file = "/nonexistent/vaults.json"\n', "vaults_file"),
        ('policy_file = "/nonexistent/policy.toml"\n', "policy_file"),
    ],
)
def test_load_config(tmp_path, extra, error):
    top, _, tables = extra.partition("[")
    path = tmp_path / "node.toml"
    path.write_text(top + BASE + ("[" + tables if tables else ""))
    if error is None:
        cfg = load_config(path)
        assert cfg["environment"] == "test"
    else:
        with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
            load_config(path)


def test_missing_required_keys_are_refused(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('environment = "test"\n')
    with pytest.raises(ConfigError, match="missing database_url"):
        load_config(path)


def test_serialised_holds_the_lock_for_every_call():
    lock = threading.RLock()

    class Adapter:
        chain = "bitcoin"

        def held(self):
            # RLock has no public "held by me" query: a non-blocking acquire from another thread fails.
            result = []
            t = threading.Thread(target=lambda: result.append(lock.acquire(blocking=False)))
            t.start()
            t.join()
            return result[0]

    a = Serialised(Adapter(), lock)
    assert a.chain == "bitcoin"
    assert a.held() is False, "another thread could take the lock during the call"


def test_worker_survives_a_failing_pass_and_stops():
    stop = threading.Event()
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a chain node away")
        return 0

    w = Worker("test", 0.01, fn, stop)
    w.start()
    wait_until(lambda: len(calls) >= 3, 10, "three passes")
    stop.set()
    w.thread.join(5)
    assert not w.thread.is_alive()
    assert w.failures == 1 and w.passes >= 2, (w.failures, w.passes)
