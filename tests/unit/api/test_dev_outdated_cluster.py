"""`custody dev up` on a dev cluster written before the signer policies named their networks and
fee limits: it stops at once, saying what to remove, instead of starting peers that refuse every
signature (api/dev.py DevCluster._refuse_outdated)."""

from __future__ import annotations

import json

import pytest

from api.dev import DevCluster
from mpc.cluster_cli import init_cluster


def test_a_cluster_written_today_starts_and_an_outdated_one_is_named(tmp_path):
    init_cluster(tmp_path / "cluster", 3, 1, [7101, 7102, 7103], [7201, 7202, 7203], passphrase_file=True)
    dev = DevCluster(tmp_path / "cluster", 7100)
    info = dev.ensure_initialised()
    assert info == json.loads((tmp_path / "cluster" / "cluster.json").read_text())
    policy = tmp_path / "cluster" / "peer-2" / "policy.toml"
    policy.write_text(policy.read_text().replace("[networks]", "[old]"))
    with pytest.raises(SystemExit) as e:
        dev.ensure_initialised()
    assert "peer-2" in str(e.value) and "Remove that folder" in str(e.value)
