"""Pre-parameters: generated in the background by real tss-lib, kept sealed on disk, each
taken once; fixture files (plain JSON) never open through the production pool."""

from __future__ import annotations

import shutil

import pytest
from support.preparams import FIXTURES, fixture_preparams
from support.procs import wait_until

from mpc import preparams, sealing

FAST = dict(time_cost=1, memory_kib=1024, parallelism=1)  # test-only KDF cost


def make_sealer(passphrase="pool passphrase, test only"):
    return sealing.Sealer(sealing.PassphraseKeyProvider(passphrase, "pool-key", **FAST), environment="test")


def test_pool_generates_in_background_and_each_is_taken_once(tmp_path):
    pool = preparams.PreParamsPool(tmp_path / "pool", make_sealer(), size=1, party="signer-1").start()
    try:
        wait_until(lambda: pool.ready() == 1, 240, "the pool generated one pre-parameter set with tss-lib")
    finally:
        pool.stop()
    files = list((tmp_path / "pool").iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0, "sealed file readable by others"
    assert b"PaillierSK" not in files[0].read_bytes(), "pre-parameters stored in the clear"
    pp = pool.take(timeout_s=1)
    assert isinstance(pp, preparams.PreParams) and repr(pp) == "PreParams(<redacted>)"
    assert pool.ready() == 0, "a taken file must be gone (never reused)"
    with pytest.raises(preparams.PreParamsError, match="pre_params_pool_empty"):
        pool.take(timeout_s=0.2)


def test_pool_refuses_files_it_did_not_seal(tmp_path):
    pool = preparams.PreParamsPool(tmp_path / "pool", make_sealer(), size=2, party="signer-1")
    # a fixture copied into the pool directory (fixture pre-params: never in production)
    shutil.copy(sorted(FIXTURES.glob("*.json"))[0], tmp_path / "pool" / "fixture.sealed")
    with pytest.raises(sealing.SealedDataTampered):
        pool.take(timeout_s=1)
    # a file sealed by another signer's pool (other passphrase) does not open either
    other = preparams.PreParamsPool(tmp_path / "other", make_sealer("another signer's passphrase"), size=2, party="signer-1")
    (path,) = [other.add(fixture_preparams(1)[0])]
    shutil.move(path, tmp_path / "pool" / path.name)
    with pytest.raises(sealing.WrongKey):
        pool.take(timeout_s=1)


def test_pool_round_trip_through_sealing(tmp_path):
    pool = preparams.PreParamsPool(tmp_path / "pool", make_sealer(), size=2, party="signer-1")
    pool.add(fixture_preparams(1, offset=1)[0])  # fixture pre-params: never in production
    assert pool.ready() == 1
    pp = pool.take(timeout_s=1)
    assert pp._reveal() == fixture_preparams(1, offset=1)[0]._reveal()
    assert pool.ready() == 0


def test_pool_size_is_bounded(tmp_path):
    with pytest.raises(ValueError):
        preparams.PreParamsPool(tmp_path, make_sealer(), size=0)
    with pytest.raises(ValueError):
        preparams.PreParamsPool(tmp_path, make_sealer(), size=10_000)
