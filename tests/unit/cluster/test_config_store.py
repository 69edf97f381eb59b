"""Config refusals, the sealed share store, quarantine, cluster init and backups."""

from __future__ import annotations

import json

import pytest
from nacl.public import PrivateKey

from mpc.cluster_cli import init_cluster
from mpc.signer import config as conf
from mpc.signer.backup import export_backup, open_backup
from mpc.signer.quarantine import Quarantine
from mpc.signer.sealer import passphrase_sealer
from mpc.signer.store import ShareStore, StoreError, VaultRecord
from mpc.transport import tls


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cl")
    init_cluster(d, 3, 1, [7001, 7002, 7003], [7101, 7102, 7103], environment="test")
    return d


def edit(cfg_path, drop=(), add=()):
    lines = [ln for ln in cfg_path.read_text().splitlines() if not any(ln.startswith(k) for k in drop)]
    out = cfg_path.with_name("edited.toml")
    # top-level keys must come before the first table
    out.write_text("\n".join(list(add) + lines) + "\n")
    return out


def test_cluster_init_writes_a_loadable_config_per_peer(cluster_dir):
    info = json.loads((cluster_dir / "cluster.json").read_text())
    assert [p["name"] for p in info["peers"]] == ["peer-1", "peer-2", "peer-3"]
    cfg = conf.load(cluster_dir / "peer-1" / "signer.toml")
    assert (cfg.name, cfg.environment, [p.name for p in cfg.peers]) == ("peer-1", "test", ["peer-2", "peer-3"])
    assert repr(cfg.passphrase) == "<redacted>"
    # Each peer pins exactly the others' certificates, and each certificate names its peer.
    for p in cfg.peers:
        assert tls.cert_name(p.tls_cert.read_bytes()) == p.name
    assert (cluster_dir / "peer-1" / "tls.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("drop,add,msg", [
    (("environment",), ('environment = "staging"',), "environment must be"),
    (("environment",), ('environment = "production"',), "[test] settings are refused"),
    (("name",), ('name = "Peer One"',), "lower-case"),
    (("listen",), (), "listen is required"),
    (("round_timeout_ms",), ("round_timeout_ms = 5",), "round_timeout_ms"),
])
def test_bad_configs_are_refused(cluster_dir, drop, add, msg):
    with pytest.raises(conf.ConfigError, match=msg.replace("[", r"\[")):
        conf.load(edit(cluster_dir / "peer-1" / "signer.toml", drop, add))


def test_no_passphrase_no_start(cluster_dir):
    p = edit(cluster_dir / "peer-1" / "signer.toml", drop=("passphrase_file",))
    with pytest.raises(conf.ConfigError, match="no default"):
        conf.load(p)


def record(vault_id="v1", party="peer-1:0"):
    return VaultRecord(vault_id, party, ("peer-1:0", "peer-2:0"), 1, "02" + "11" * 32, "22" * 32, 0)


def test_store_round_trip_wrong_passphrase_and_tampering(tmp_path):
    s = ShareStore(tmp_path, passphrase_sealer("peer-1/1", "correct horse battery", "test"), "peer-1/1", "peer-1")
    s.open()
    s.put_vault(record(), b"share-bytes")
    again = ShareStore(tmp_path, passphrase_sealer("peer-1/1", "correct horse battery", "test"), "peer-1/1", "peer-1")
    again.open()
    assert again.vault("v1") == (record(), b"share-bytes")
    with pytest.raises(StoreError, match="wrong passphrase"):
        ShareStore(tmp_path, passphrase_sealer("peer-1/1", "wrong horse battery", "test"), "peer-1/1", "peer-1").open()
    # Another party name is other associated data: the same files do not open for it.
    with pytest.raises(StoreError):
        ShareStore(tmp_path, passphrase_sealer("peer-1/1", "correct horse battery", "test"), "peer-1/1", "peer-2").open()
    f = tmp_path / "vaults" / "v1.sealed"
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 1
    f.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match="tampered"):
        ShareStore(tmp_path, passphrase_sealer("peer-1/1", "correct horse battery", "test"), "peer-1/1", "peer-1").open()


def test_vault_files_without_keycheck_are_refused(tmp_path):
    s = ShareStore(tmp_path, passphrase_sealer("k", "correct horse battery", "test"), "k", "peer-1")
    s.open()
    s.put_vault(record(), b"x")
    (tmp_path / "keycheck.sealed").unlink()
    with pytest.raises(StoreError, match="missing"):
        ShareStore(tmp_path, passphrase_sealer("k", "correct horse battery", "test"), "k", "peer-1").open()


def test_backup_opens_only_with_the_recovery_key(tmp_path):
    s = ShareStore(tmp_path / "d", passphrase_sealer("k", "correct horse battery", "test"), "k", "peer-1")
    s.open()
    s.put_vault(record(), b"the-share")
    recovery = PrivateKey.generate()
    export_backup(s, "v1", bytes(recovery.public_key), tmp_path / "b.bin")
    blob = (tmp_path / "b.bin").read_bytes()
    assert b"the-share".hex().encode() not in blob
    d = open_backup(blob, bytes(recovery))
    assert bytes.fromhex(d["share"]) == b"the-share" and d["vault"]["vault_id"] == "v1" and d["peer"] == "peer-1"
    with pytest.raises(Exception):
        open_backup(blob, bytes(PrivateKey.generate()))
    with pytest.raises(KeyError):
        export_backup(s, "nope", bytes(recovery.public_key), tmp_path / "c.bin")


def test_quarantine_after_repeated_aborts_within_the_window():
    now = [0.0]
    q = Quarantine(aborts=3, window_s=60, duration_s=100, clock=lambda: now[0])
    assert not q.record_abort("peer-2")
    now[0] = 70  # the first abort left the window
    assert not q.record_abort("peer-2") and not q.record_abort("peer-2")
    assert not q.is_quarantined("peer-2")
    assert q.record_abort("peer-2")
    assert q.is_quarantined("peer-2") and q.quarantined() == ["peer-2"]
    now[0] = 171
    assert not q.is_quarantined("peer-2")


def test_quarantine_and_conflicts_survive_a_restart(tmp_path):
    now = [1_000.0]
    path = tmp_path / "quarantine.json"
    q = Quarantine(path, aborts=2, window_s=60, duration_s=100, conflict_s=50, clock=lambda: now[0])
    assert not q.record_abort("peer-3")
    assert q.record_conflict("peer-3", "peer-2") and not q.record_conflict("peer-2", "peer-3")  # one pair, either way
    assert path.stat().st_mode & 0o077 == 0
    again = Quarantine(path, aborts=2, window_s=60, duration_s=100, conflict_s=50, clock=lambda: now[0])
    assert again.record_abort("peer-3")  # the abort before the restart still counts
    assert again.in_conflict("peer-2", "peer-3") and again.conflicts() == [("peer-2", "peer-3")]
    third = Quarantine(path, aborts=2, window_s=60, duration_s=100, conflict_s=50, clock=lambda: now[0])
    assert third.quarantined() == ["peer-3"]
    now[0] += 51
    assert not third.in_conflict("peer-2", "peer-3") and third.quarantined() == ["peer-3"]
    now[0] += 50
    assert third.quarantined() == []
