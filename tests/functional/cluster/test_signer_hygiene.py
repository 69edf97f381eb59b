"""A real `custody signer` process refuses to start on sealed state it cannot trust: a share
file readable by other users (0644), and data sealed under environment = "production" opened
by the same config switched to "test" (which allows opaque digests). Each refusal is exit 2,
naming the file and why; the share file put back to 0600, the peer starts with its vault.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import shutil
import tempfile
import urllib.request

import pytest

from mpc.cluster_cli import init_cluster
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import CUSTODY, ROOT
from tests.support.procs import Proc, free_port, tail, wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

START_DEADLINE_S = 120
_runs = itertools.count()


@pytest.fixture(scope="module")
def cluster(request):
    # Two peers: the vault is 2-of-2, which a policy must allow by name (n_of_n_allowed).
    yield from make_cluster(request, 2, 1, round_timeout_ms=5_000,
                            before_start=lambda c: c.add_policy("[ceremonies.vaults.hot-1]\nn_of_n_allowed = true"))


def health_ready(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health", timeout=2) as r:
            return bool(json.loads(r.read()).get("ready"))
    except OSError:
        return False


def start_expecting_refusal(config: pathlib.Path, metrics_port: int, what: str) -> str:
    """Starts the peer; returns its stderr once it has exited 2. Fails at once if it says ready."""
    proc = Proc(f"refused-{next(_runs)}", [*CUSTODY, "signer", "--config", config], config.parent / "logs",
                env={"PYTHONPATH": str(ROOT)})
    proc.start()
    try:
        outcome = wait_until(lambda: "exited" if not proc.alive() else health_ready(metrics_port) and "ready",
                             START_DEADLINE_S, "the peer exits or says ready")
    finally:
        proc.stop()
    stderr = tail(proc.stderr_path)
    assert (outcome, proc.popen.returncode) == ("exited", 2), f"started despite {what} ({outcome}):\n{stderr}"
    return stderr


def test_a_share_file_readable_by_others_stops_the_peer_from_starting(cluster):
    cluster.client().keygen("hot-1", ("peer-1", "peer-2"), 1)
    cluster.procs["peer-2"].stop()
    share = cluster.dir / "peer-2" / "data" / "vaults" / "hot-1.sealed"
    assert share.stat().st_mode & 0o777 == 0o600, "written 0600"
    share.chmod(0o644)
    try:
        stderr = start_expecting_refusal(cluster.config("peer-2"), cluster.metrics_port("peer-2"), "a 0644 share file")
        assert f"refusing to start: {share} is mode 0644; a share file must be 0600 (chmod 600 {share})" in stderr, stderr
    finally:
        share.chmod(0o600)
    cluster.start("peer-2")
    assert cluster.health("peer-2")["vaults"] == 1


def test_a_production_share_does_not_load_under_a_test_config():
    """One peer of a production cluster (no other peer needed to start), started once so that
    it seals its key check under "production"; its own pre-params search is cut short."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="signer-env-"))
    ports, metrics = [free_port(), free_port()], [free_port(), free_port()]
    init_cluster(workdir, 2, 1, ports, metrics, environment="production", passphrase_file=True)
    config = workdir / "peer-1" / "signer.toml"
    peer = Proc("peer-1", [*CUSTODY, "signer", "--config", config], workdir / "logs", env={"PYTHONPATH": str(ROOT)})

    passed = False
    try:
        peer.start()
        peer.wait_ready(lambda: health_ready(metrics[0]), START_DEADLINE_S, "health says ready")
        peer.stop()
        assert (workdir / "peer-1" / "data" / "keycheck.sealed").exists(), "sealed under production at the first start"
        text = config.read_text()
        assert 'environment = "production"' in text
        config.write_text(text.replace('environment = "production"', 'environment = "test"'))
        stderr = start_expecting_refusal(config, metrics[0], "a production share under a test config")
        assert "keycheck.sealed: sealed under environment 'production', this config says 'test'" in stderr, stderr
        passed = True
    finally:
        peer.stop()
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept the peer's dir for inspection: {workdir}")
