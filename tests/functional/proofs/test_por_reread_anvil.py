"""custody-verify re-reads ETH balances from a node the verifier trusts (a real Anvil), at the
snapshot's height: equal balances pass, also after they change later; a balance the chain
does not show, or a header naming another block, is rejected."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
import urllib.request

import pytest

from node.ports import ChainHeight
from proofs import snapshot
from tests.support import por_world as W
from tests.support.procs import Proc, free_port

pytestmark = pytest.mark.functional
ANVIL = pathlib.Path(__file__).resolve().parents[3] / ".tools/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
BIN = pathlib.Path(sys.executable).parent / "custody-verify"


def rpc(url, method, *params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        reply = json.loads(r.read())
    assert "error" not in reply, reply
    return reply["result"]


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    if not ANVIL.exists():
        pytest.fail(f"{ANVIL} is missing: run `deploy/dev/tools.sh test` (npm @foundry-rs/anvil-linux-amd64)")
    port = free_port()
    proc = Proc("anvil", [ANVIL, "--host", "127.0.0.1", "--port", port, "--chain-id", "1337", "--silent"],
                tmp_path_factory.mktemp("anvil"))
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(lambda: rpc(url, "eth_chainId") == "0x539", 30, "Anvil answers eth_chainId")
        yield url
    finally:
        proc.stop()


def snapshot_at(anvil, tmp_path, holdings, claim_extra_wei=0):
    wallets = W.TestKeyWallets(holdings)
    for a in wallets.addresses:
        if a.asset == "ETH":  # ERC-20 balances live in a contract, not here
            rpc(anvil, "anvil_setBalance", a.address, hex(a.balance))
    rpc(anvil, "evm_mine")
    block = rpc(anvil, "eth_getBlockByNumber", "latest", False)
    chains = (W.CHAINS[0], ChainHeight("ethereum", "1337", int(block["number"], 16), block["hash"][2:]))
    if claim_extra_wei:
        first = wallets.addresses[0]
        wallets.addresses[0] = type(first)(first.chain, first.asset, first.address, first.vault_id, first.path,
                                           first.balance + claim_extra_wei)
    store = snapshot.SnapshotStore(tmp_path / "store")
    key = W.Ed25519PrivateKey.generate()
    published = snapshot.take_snapshot(W.TableLiabilities(W.BALANCES, chains=chains), wallets, wallets, store, key,
                                       dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc))
    return W.World(tmp_path, store, key, W.public_hex(key), published), wallets


def verify_assets(world, anvil):
    files = world.write_files()
    return subprocess.run([str(BIN), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                           world.public_key_hex, "--ethereum-rpc", anvil], capture_output=True, text=True, timeout=120)


HOLDINGS = [("ethereum", "ETH", 3, 3 * 10**18), ("ethereum", "ETH", 4, 5), ("ethereum", "USDT", 3, 10**12),
            ("bitcoin", "BTC", 1, 10**8)]


def test_balances_reread_at_the_snapshot_height(anvil, tmp_path):
    world, wallets = snapshot_at(anvil, tmp_path, HOLDINGS)
    r = verify_assets(world, anvil)
    assert r.returncode == 0, r.stderr
    assert "valid: 2 ETH balances re-read from the node at height" in r.stdout
    assert "USDT: token balances not re-read" in r.stdout
    # Later the address spends: the snapshot's height still shows what it held then. (Anvil's
    # cheat codes edit the latest block's state in place: seal the snapshot block first.)
    rpc(anvil, "evm_mine")
    rpc(anvil, "anvil_setBalance", wallets.addresses[0].address, hex(1))
    rpc(anvil, "evm_mine")
    r = verify_assets(world, anvil)
    assert r.returncode == 0, r.stderr


def test_a_balance_the_chain_does_not_show_is_rejected(anvil, tmp_path):
    world, _ = snapshot_at(anvil, tmp_path, HOLDINGS, claim_extra_wei=1)
    r = verify_assets(world, anvil)
    assert r.returncode == 1 and r.stderr.startswith("invalid: balance_differs_on_chain"), r.stderr


def test_a_header_naming_another_block_is_rejected(anvil, tmp_path):
    world = W.make_world(tmp_path)  # its Ethereum block hash is made up
    r = verify_assets(world, anvil)
    assert r.returncode == 1 and r.stderr.startswith("invalid: node_block_mismatch"), r.stderr
