"""`custody vault` end to end on four real signer processes: a key generation and a rotation
(peer-1 leaves, peer-4 joins) proposed, approved by each approver with their own key, and run;
the vaults file then names the new committee, which signs. Without the approvals the same run
is refused by the peers. Then a refresh, and the vault retired (every share dropped)."""

from __future__ import annotations

import json
import subprocess

import pytest

from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from node.ports import Vault
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import CUSTODY, ROOT, btc_withdrawal

pytestmark = [pytest.mark.functional, pytest.mark.slow]

CLI_DEADLINE_S = 300


@pytest.fixture(scope="module")
def cluster(request):
    yield from make_cluster(request, 4, 1, round_timeout_ms=8_000)


def custody(*args) -> dict:
    p = subprocess.run([*CUSTODY, "vault", *map(str, args)], capture_output=True, text=True, timeout=CLI_DEADLINE_S,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, f"custody vault {' '.join(map(str, args))}: {p.returncode}\n{p.stderr}"
    return json.loads(p.stdout)


def refused(*args) -> str:
    p = subprocess.run([*CUSTODY, "vault", *map(str, args)], capture_output=True, text=True, timeout=CLI_DEADLINE_S,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1, f"expected a refusal: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stderr


def test_keygen_then_a_rotation_through_the_cli(cluster, tmp_path):
    cf, vf = cluster.dir / "cluster.json", tmp_path / "vaults.json"
    keys = {a: cluster.info["approvers"][a] for a in ("approver-1", "approver-2")}
    new = tmp_path / "keygen.json"
    custody("keygen", "propose", "--cluster-file", cf, "--vault-id", "ops", "--committee", "peer-1,peer-2,peer-3",
            "--threshold", 1, "--out", new)
    for a, k in keys.items():
        custody("approve", "--ceremony", new, "--approver-id", a, "--key-file", k)
    made = custody("keygen", "run", "--cluster-file", cf, "--vaults-file", vf, "--ceremony", new)
    assert made["committee"] == ["peer-1:0", "peer-2:0", "peer-3:0"]

    rotate = tmp_path / "rotate.json"
    custody("reshare", "propose", "--cluster-file", cf, "--vaults-file", vf, "--vault", "ops",
            "--committee", "peer-2,peer-3,peer-4", "--threshold", 1, "--out", rotate)
    # One approval is below the quorum (the dev bands' highest asks for two): every peer refuses.
    custody("approve", "--ceremony", rotate, "--approver-id", "approver-1", "--key-file", keys["approver-1"])
    assert "approvals_below_quorum" in refused("reshare", "run", "--cluster-file", cf, "--vaults-file", vf, "--ceremony", rotate)
    custody("approve", "--ceremony", rotate, "--approver-id", "approver-2", "--key-file", keys["approver-2"])
    out = custody("reshare", "run", "--cluster-file", cf, "--vaults-file", vf, "--ceremony", rotate)
    assert out["public_key"] == made["public_key"] and out["committee"] == ["peer-2:1", "peer-3:1", "peer-4:1"]
    assert json.loads(vf.read_text())["ops"]["committee"] == ["peer-2:1", "peer-3:1", "peer-4:1"]
    assert not (cluster.dir / "peer-1" / "data" / "vaults" / "ops.sealed").exists()
    vault = Vault("ops", tuple(out["committee"]), out["threshold"], bytes.fromhex(out["public_key"]), bytes.fromhex(out["chain_code"]))
    tx, intent = btc_withdrawal(RecordKeys(vault.public_key, vault.chain_code), "ops")
    assert cluster.client().sign(vault, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),),
                                 coordinator="peer-4")

    # A refresh: the same committee and threshold, new shares (what docs/walkthrough.md shows on
    # `make run`'s three peers); every peer is in both committees.
    refresh = tmp_path / "refresh.json"
    custody("reshare", "propose", "--cluster-file", cf, "--vaults-file", vf, "--vault", "ops",
            "--committee", "peer-2,peer-3,peer-4", "--threshold", 1, "--out", refresh)
    for a, k in keys.items():
        custody("approve", "--ceremony", refresh, "--approver-id", a, "--key-file", k)
    again = custody("reshare", "run", "--cluster-file", cf, "--vaults-file", vf, "--ceremony", refresh)
    assert again["public_key"] == made["public_key"] and again["committee"] == ["peer-2:2", "peer-3:2", "peer-4:2"]

    # Retired: every peer of the committee drops its share; the vaults file forgets it.
    retire = tmp_path / "retire.json"
    custody("retire", "propose", "--cluster-file", cf, "--vaults-file", vf, "--vault", "ops", "--out", retire)
    for a, k in keys.items():
        custody("approve", "--ceremony", retire, "--approver-id", a, "--key-file", k)
    assert custody("retire", "run", "--cluster-file", cf, "--vaults-file", vf, "--ceremony", retire)["retired"] == "ops"
    assert "ops" not in json.loads(vf.read_text())
    assert not any((cluster.dir / n / "data" / "vaults" / "ops.sealed").exists() for n in cluster.names)
