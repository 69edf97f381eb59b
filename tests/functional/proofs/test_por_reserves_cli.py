"""`custody reserves history|export` on a real store, then `custody-verify` on what it wrote."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.support import por_world as W

BIN = pathlib.Path(sys.executable).parent


def run(name, *args):
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_history_export_then_verify(tmp_path):
    world = W.make_world(tmp_path)
    store = tmp_path / "store"
    world.store.close()
    r = run("custody", "reserves", "history", "--store", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"1\t{world.published.snapshot_id}\t2026-11-23T12:00:00Z\tdepth=4\tBTC=")
    out = tmp_path / "out"
    r = run("custody", "reserves", "export", "--store", store, "--snapshot", world.published.snapshot_id,
            "--out", out, "--account", "acct-bob", "--account", "acct-émile")
    assert r.returncode == 0, r.stderr
    for account in ("acct-bob", "acct-émile"):
        v = run("custody-verify", "proof", out / f"proof-{account}.json", "--signed-header", out / "header.json",
                "--public-key", world.public_key_hex)
        assert v.returncode == 0, v.stderr
    v = run("custody-verify", "assets", out / "assets.json", "--signed-header", out / "header.json",
            "--public-key", world.public_key_hex)
    assert v.returncode == 0, v.stderr
    compact = tmp_path / "compact"
    r = run("custody", "reserves", "export", "--store", store, "--snapshot", world.published.snapshot_id,
            "--out", compact, "--account", "acct-bob", "--format", "por-mst/1-compact")
    assert r.returncode == 0, r.stderr
    assert json.loads((compact / "proof-acct-bob.json").read_text())["format"] == "por-mst/1-compact"
    assert (compact / "proof-acct-bob.json").stat().st_size < (out / "proof-acct-bob.json").stat().st_size
    v = run("custody-verify", "proof", compact / "proof-acct-bob.json", "--signed-header", compact / "header.json",
            "--public-key", world.public_key_hex, "--account-id", "acct-bob")
    assert v.returncode == 0, v.stderr
    r = run("custody", "reserves", "export", "--store", store, "--snapshot", world.published.snapshot_id,
            "--out", out, "--account", "acct-nobody")
    assert r.returncode == 1 and "not in snapshot" in r.stderr
    r = run("custody", "reserves", "history", "--store", tmp_path / "nowhere")
    assert r.returncode == 2
