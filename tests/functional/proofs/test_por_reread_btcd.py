"""custody-verify re-reads BTC balances from a node the verifier trusts (a real btcd in regtest
with an address index), at the snapshot's height."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
import urllib.request

import coincurve
import pytest

from node.ports import ChainHeight
from proofs import assets as ast
from proofs import snapshot
from tests.support import por_world as W
from tests.support.nodes import write_btcd_config
from tests.support.procs import Proc, free_port

pytestmark = pytest.mark.functional
ROOT = pathlib.Path(__file__).resolve().parents[3]
BTCD = ROOT / ".tools/bin/btcd"
BIN = pathlib.Path(sys.executable).parent / "custody-verify"
KEY_INDEX = 1  # por_world's test key (index + 1) mines the blocks: its address holds the coinbases


def rpc(url, method, *params):
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                          "Authorization": "Basic dTpw"})  # u:p
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.read())
    assert not reply.get("error"), reply
    return reply["result"]


@pytest.fixture(scope="module")
def btcd(tmp_path_factory):
    if not BTCD.exists():
        pytest.fail(f"{BTCD} is missing: run `deploy/dev/tools.sh test` (go install btcd@v0.26.0)")
    d = tmp_path_factory.mktemp("btcd")
    mining = ast.p2wpkh_address(coincurve.PrivateKey((KEY_INDEX + 1).to_bytes(32, "big")).public_key.format(), "regtest")
    port = free_port()
    conf = write_btcd_config(d / "btcd.conf", "u", "p")  # not on btcd's command line
    proc = Proc("btcd", [BTCD, f"--configfile={conf}", "--regtest", f"--datadir={d}/data", f"--logdir={d}/log",
                         f"--listen=127.0.0.1:{free_port()}", f"--rpclisten=127.0.0.1:{port}", "--notls",
                         f"--miningaddr={mining}", "--txindex", "--addrindex"], d)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(lambda: rpc(url, "getblockcount") == 0, 60, "btcd answers getblockcount")
        rpc(url, "generate", 3)
        yield url, f"http://u:p@127.0.0.1:{port}", mining
    finally:
        proc.stop()


def snapshot_at(url, tmp_path, height, claim_sats):
    wallets = W.TestKeyWallets([("bitcoin", "BTC", KEY_INDEX, claim_sats), ("ethereum", "ETH", 3, 10**18)])
    chains = (ChainHeight("bitcoin", "regtest", height, rpc(url, "getblockhash", height)), W.CHAINS[1])
    store = snapshot.SnapshotStore(tmp_path / "store")
    key = W.Ed25519PrivateKey.generate()
    published = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES, chains=chains), wallets, wallets, store, key,
                                       dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc))
    return W.World(tmp_path, store, key, W.public_hex(key), published)


def verify(world, node_url):
    files = world.write_files()
    return subprocess.run([str(BIN), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                           world.public_key_hex, "--bitcoin-rpc", node_url], capture_output=True, text=True, timeout=120)


def test_btc_balance_reread_at_the_snapshot_height(btcd, tmp_path):
    url, auth_url, mining = btcd
    world = snapshot_at(url, tmp_path, 3, 3 * 50 * 10**8)  # three regtest coinbases of 50 BTC
    r = verify(world, auth_url)
    assert r.returncode == 0, r.stderr
    assert "valid: 1 BTC balances re-read from the node at height 3" in r.stdout
    rpc(url, "generate", 2)  # later blocks pay the address more; height 3 still shows 150 BTC
    assert ast.bitcoin_balance_at(auth_url, mining, 5) == 5 * 50 * 10**8
    r = verify(world, auth_url)
    assert r.returncode == 0, r.stderr


def test_a_btc_balance_the_chain_does_not_show_is_rejected(btcd, tmp_path):
    url, auth_url, _ = btcd
    world = snapshot_at(url, tmp_path, 2, 2 * 50 * 10**8 + 1)
    r = verify(world, auth_url)
    assert r.returncode == 1 and r.stderr.startswith("invalid: balance_differs_on_chain"), r.stderr


def test_wrong_credentials_or_block_are_rejected(btcd, tmp_path):
    url, auth_url, _ = btcd
    world = snapshot_at(url, tmp_path, 2, 2 * 50 * 10**8)
    r = verify(world, auth_url.replace("u:p@", "u:wrong@"))
    assert r.returncode == 1 and r.stderr.startswith("invalid: node_"), r.stderr
    other = W.make_world(tmp_path / "other")  # its Bitcoin block hash is made up
    r = verify(other, auth_url)
    assert r.returncode == 1 and r.stderr.startswith("invalid: node_block_mismatch"), r.stderr
