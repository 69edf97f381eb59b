"""custody-verify, run as the console script a customer runs: exit 0 only when valid, and
each tampering of design/por-format.md's list rejected with its reason."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.support import por_world as W

BIN = pathlib.Path(sys.executable).parent / "custody-verify"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return W.make_world(tmp_path_factory.mktemp("por"))


def run(*args) -> subprocess.CompletedProcess:
    assert BIN.exists(), f"{BIN} is missing: pip install -e . provides the custody-verify console script"
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=60)


def _args(kind, files, key):
    if kind == "proof":
        return ["proof", files["proof"], "--signed-header", files["header"], "--public-key", key]
    if kind == "header":
        return ["header", files["header"], "--public-key", key]
    return ["assets", files["assets"], "--signed-header", files["header"], "--public-key", key]


@pytest.mark.parametrize("kind", ["proof", "header", "assets"])
def test_valid_files_exit_zero(world, kind):
    files = world.write_files()
    r = run(*_args(kind, files, world.public_key_hex))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("valid:")
    if kind == "assets":
        btc_liabilities = sum(b[0] for b in W.BALANCES.values())
        assert btc_liabilities == 2**70 + 150_000_049
        assert f"BTC: reserves {2**70 + 160_000_000} / liabilities {btc_liabilities} = 1.0000" in r.stdout, r.stdout
        assert "ETH: reserves 3000000000000000000 / liabilities 2500000000000000003 = 1.1999" in r.stdout, r.stdout


@pytest.mark.parametrize("name, kind, mutate, reason", W.TAMPER_CASES, ids=[c[0] for c in W.TAMPER_CASES])
def test_tampered_files_are_rejected(world, tmp_path, name, kind, mutate, reason):
    files = world.write_files()
    docs = {k: json.loads(files[k].read_text()) for k in ("proof", "header", "assets")}
    mutate(docs)
    out = {k: tmp_path / f"{k}.json" for k in docs}
    for k, doc in docs.items():
        out[k].write_text(json.dumps(doc))
    r = run(*_args(kind, out, world.public_key_hex))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"invalid: {reason}"), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("name, kind, edit, reason", W.RAW_TAMPER_CASES, ids=[c[0] for c in W.RAW_TAMPER_CASES])
def test_json_text_tampering_is_rejected(world, tmp_path, name, kind, edit, reason):
    out = W.raw_tampered(world.write_files(), kind, edit, tmp_path)
    r = run(*_args(kind, out, world.public_key_hex))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"invalid: {reason}"), r.stderr


def test_vector_proofs_verify_with_the_cli(vector, tmp_path):
    for account, proof in vector["expected"]["proofs"].items():
        p = tmp_path / f"{account}.json"
        p.write_text(json.dumps(proof))
        r = run("proof", p)
        assert r.returncode == 0, r.stderr


def test_proof_from_another_snapshot_does_not_match_the_header(world, tmp_path):
    other = W.make_world(tmp_path)
    files = world.write_files()
    r = run("proof", other.write_files()["proof"], "--signed-header", files["header"], "--public-key", world.public_key_hex)
    assert r.returncode == 1 and r.stderr.startswith("invalid: snapshot_mismatch"), r.stderr


@pytest.mark.parametrize(
    "args, code",
    [
        (["proof", "/nonexistent.json"], 2),
        (["header", "HEADER"], 2),  # no --public-key: usage error
        (["proof", "GARBAGE"], 1),
    ],
)
def test_usage_and_garbage(world, tmp_path, args, code):
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b'{"format": "por-mst/1", "depth": 1.5}')
    files = world.write_files()
    args = [str(files["header"]) if a == "HEADER" else str(garbage) if a == "GARBAGE" else a for a in args]
    r = run(*args)
    assert r.returncode == code, r.stderr


def test_user_proofs_need_only_the_standard_library(tmp_path, vector):
    p = tmp_path / "alice.json"
    p.write_text(json.dumps(vector["expected"]["proofs"]["acct-alice"]))
    code = (
        "import sys; from proofs import verify_cli; rc = verify_cli.main(['proof', sys.argv[1]]);"
        "third = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy','coincurve','cryptography','Crypto','nacl','structlog','rfc8785','pydantic','sqlalchemy'});"
        "print(third); sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_account_id_must_match_when_given(vector, tmp_path):
    p = tmp_path / "alice.json"
    p.write_text(json.dumps(vector["expected"]["proofs"]["acct-alice"]))
    assert run("proof", p, "--account-id", "acct-alice").returncode == 0
    r = run("proof", p, "--account-id", "acct-bob")
    assert r.returncode == 1 and r.stderr.startswith("invalid: account_mismatch"), r.stderr


def test_refuses_python_O(vector, tmp_path):
    p = tmp_path / "alice.json"
    p.write_text(json.dumps(vector["expected"]["proofs"]["acct-alice"]))
    r = subprocess.run([sys.executable, "-O", "-c", "import sys; from proofs import verify_cli; sys.exit(verify_cli.main(sys.argv[1:]))",
                        "proof", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "python -O" in r.stderr


def test_header_chain_with_prev(world, tmp_path):
    wallets = W.TestKeyWallets(W.HOLDINGS)
    second = W.snapshot.take_snapshot(W.TableLiabilities(W.BALANCES), wallets, wallets, world.store, world.key,
                                      W.dt.datetime(2026, 11, 24, tzinfo=W.dt.timezone.utc))
    first_file, second_file = tmp_path / "first.json", tmp_path / "second.json"
    first_file.write_text(json.dumps(world.published.signed_header))
    second_file.write_text(json.dumps(second.signed_header))
    r = run("header", second_file, "--public-key", world.public_key_hex, "--prev", first_file)
    assert r.returncode == 0 and "chains to the previous header" in r.stdout, r.stderr
    r = run("header", first_file, "--public-key", world.public_key_hex, "--prev", second_file)
    assert r.returncode == 1 and r.stderr.startswith("invalid: header_chain_broken"), r.stderr
