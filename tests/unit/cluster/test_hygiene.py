"""Shares at rest: the files a signer and `custody cluster init` write are 0600 in 0700 folders
(under a umask that would allow more), the start-up check refuses anything looser, or not
ours, naming it (table, one row per case), and a share sealed under one environment does not
load under another."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from mpc.cluster_cli import init_cluster
from mpc.signer import config as conf
from mpc.signer import hygiene
from mpc.signer.cli import open_state
from mpc.signer.sealer import passphrase_sealer
from mpc.signer.store import ShareStore, StoreError, VaultRecord


@pytest.fixture
def loose_umask():
    """umask 0: every mode below comes from the code, not from the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def record(vault_id="hot-1"):
    return VaultRecord(vault_id, "peer-1:0", ("peer-1:0", "peer-2:0"), 1, "02" + "11" * 32, "22" * 32, 0)


def test_cluster_init_writes_private_keys_0600_in_0700_folders(tmp_path, loose_umask):
    init_cluster(tmp_path, 2, 1, [7001, 7002], [7101, 7102], environment="test")
    private = ["node/tls.key", "node/signing.key", "approvers/approver-1.key", "approvers/approver-2.key",
               "peer-1/tls.key", "peer-1/passphrase", "peer-2/tls.key", "peer-2/passphrase"]
    got = {p: (mode(tmp_path / p), mode((tmp_path / p).parent)) for p in private}
    assert got == {p: (0o600, 0o700) for p in private}
    assert mode(tmp_path / "peer-1" / "tls.crt") == 0o644  # public files stay readable


def test_cluster_init_writes_passphrase_files_on_request(tmp_path):
    init_cluster(tmp_path, 2, 1, [7001, 7002], [7101, 7102], environment="production", passphrase_file=True)
    cfg = conf.load(tmp_path / "peer-1" / "signer.toml", env={})
    assert cfg.environment == "production" and cfg.passphrase_file == tmp_path / "peer-1" / "passphrase"
    assert mode(cfg.passphrase_file) == 0o600


def test_the_store_writes_0600_files_in_0700_folders(tmp_path, loose_umask):
    data = tmp_path / "data"
    s = ShareStore(data, passphrase_sealer("peer-1-1", "correct horse battery", "test"), "peer-1-1", "peer-1")
    s.open()
    s.put_vault(record(), b"share")
    s.put_vault(record(), b"share, rewritten")  # over an existing file
    assert {p.relative_to(data).as_posix(): mode(p) for p in [data, *data.rglob("*")]} == {
        ".": 0o700, "vaults": 0o700, "keycheck.sealed": 0o600, "vaults/hot-1.sealed": 0o600}
    hygiene.check_private_tree(data)


def _world(tmp_path):
    """A written test cluster whose peer-1 has a store holding one vault, a pre-params file and a
    record file (stand-ins: the check looks at modes, not contents)."""
    init_cluster(tmp_path, 2, 1, [7001, 7002], [7101, 7102], environment="test")
    cfg = conf.load(tmp_path / "peer-1" / "signer.toml")
    store = ShareStore(cfg.data_dir, passphrase_sealer(cfg.key_id, cfg.passphrase.reveal(), cfg.environment), cfg.key_id,
                       cfg.name)
    store.open()
    store.put_vault(record(), b"share")
    (cfg.data_dir / "preparams").mkdir(mode=0o700)
    (cfg.data_dir / "preparams" / "a.sealed").touch(mode=0o600)
    (cfg.data_dir / "records").mkdir(mode=0o700)  # mpc/signer/records.py's folder
    (cfg.data_dir / "records" / "r.log").touch(mode=0o600)
    return cfg


def _chmod(rel, m):
    return lambda cfg, mp: os.chmod(cfg.data_dir / rel if rel else cfg.data_dir, m)


def _owned_by_another(cfg, mp):
    """Every file now belongs to someone else, as seen by the check (no root needed)."""
    real = os.geteuid()
    mp.setattr(hygiene.os, "geteuid", lambda: real + 1)


START_CASES = [
    # (what, change made before the start-up check, refusal naming the file and its mode; None: starts)
    ("private as written", lambda cfg, mp: None, None),
    ("a stricter file still starts", _chmod("vaults/hot-1.sealed", 0o400), None),
    ("data dir missing is created 0700", lambda cfg, mp: shutil.rmtree(cfg.data_dir), None),
    ("share file 0644", _chmod("vaults/hot-1.sealed", 0o644),
     r"data/vaults/hot-1\.sealed is mode 0644; a share file must be 0600 \(chmod 600 .*data/vaults/hot-1\.sealed\)"),
    ("share file group-readable", _chmod("vaults/hot-1.sealed", 0o640), r"hot-1\.sealed is mode 0640; a share file"),
    ("key check 0604", _chmod("keycheck.sealed", 0o604), r"keycheck\.sealed is mode 0604; a file in the data dir"),
    ("pre-params file 0644", _chmod("preparams/a.sealed", 0o644), r"a\.sealed is mode 0644; a pre-parameters file"),
    ("record file 0644", _chmod("records/r.log", 0o644), r"r\.log is mode 0644; a record file"),
    ("data dir 0755", _chmod("", 0o755), r"data is mode 0755; the data dir must be 0700 \(chmod 700 "),
    ("vaults folder 0750", _chmod("vaults", 0o750), r"vaults is mode 0750; a folder in the data dir must be 0700"),
    ("records folder 0701", _chmod("records", 0o701), r"records is mode 0701; a folder in the data dir"),
    ("a symbolic link in the data dir", lambda cfg, mp: (cfg.data_dir / "vaults" / "x.sealed").symlink_to(cfg.tls_key),
     r"x\.sealed is not a regular file or folder"),
    ("TLS key 0644", lambda cfg, mp: os.chmod(cfg.tls_key, 0o644), r"tls\.key is mode 0644; a TLS private key must be 0600"),
    ("passphrase file 0640", lambda cfg, mp: os.chmod(cfg.passphrase_file, 0o640),
     r"passphrase is mode 0640; a passphrase file must be 0600"),
    ("owned by another user", _owned_by_another, r"data is owned by uid \d+, not the signer's uid \d+"),
]


@pytest.mark.parametrize("what,change,refusal", START_CASES, ids=[c[0] for c in START_CASES])
def test_start_refuses_files_open_to_others(tmp_path, monkeypatch, what, change, refusal):
    cfg = _world(tmp_path)
    change(cfg, monkeypatch)
    if refusal is None:
        hygiene.check_at_start(cfg)
        assert mode(cfg.data_dir) == 0o700
        return
    with pytest.raises(hygiene.FileExposed, match=refusal):
        hygiene.check_at_start(cfg)
    with pytest.raises(ValueError, match=refusal):  # what `custody signer` reports (exit 2)
        open_state(cfg)


def test_a_production_share_does_not_load_under_a_test_config(tmp_path):
    prod = ShareStore(tmp_path / "a", passphrase_sealer("peer-1-1", "correct horse battery", "production"), "peer-1-1", "peer-1")
    prod.open()
    prod.put_vault(record(), b"share")
    # The key check is the first file opened: refused, naming both environments.
    with pytest.raises(StoreError, match=r"keycheck\.sealed: sealed under environment 'production', this config says 'test'"):
        ShareStore(tmp_path / "a", passphrase_sealer("peer-1-1", "correct horse battery", "test"), "peer-1-1", "peer-1").open()
    # A production share file beside a test key check (copied in): the share is refused too.
    test = ShareStore(tmp_path / "b", passphrase_sealer("peer-1-1", "correct horse battery", "test"), "peer-1-1", "peer-1")
    test.open()
    (tmp_path / "b" / "vaults" / "hot-1.sealed").write_bytes((tmp_path / "a" / "vaults" / "hot-1.sealed").read_bytes())
    with pytest.raises(StoreError, match=r"hot-1\.sealed: sealed under environment 'production', this config says 'test'"):
        ShareStore(tmp_path / "b", passphrase_sealer("peer-1-1", "correct horse battery", "test"), "peer-1-1", "peer-1").open()
    # And the other way round.
    with pytest.raises(StoreError, match="sealed under environment 'test', this config says 'production'"):
        ShareStore(tmp_path / "b", passphrase_sealer("peer-1-1", "correct horse battery", "production"), "peer-1-1",
                   "peer-1").open()
