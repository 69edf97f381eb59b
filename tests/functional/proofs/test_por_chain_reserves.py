"""ReservesBalances on the real chain adapters: funded addresses and their balances at the
snapshot's heights — Bitcoin from the adapter's own UTXO set (btcd, with an address index so
that custody-verify can re-read), Ethereum at the block number (Anvil, ETH and a test ERC-20).
A later transfer changes the tip, never the balances at the snapshot height, and custody-verify
re-reading from the node agrees with what the adapters reported.

Reserves signatures here come from a plain test key (tests/support/test_signer.py), standing in
for the MPC cluster (the snapshot job's test signs through the real cluster).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import subprocess
import sys

import pytest

from chains.errors import ChainError
from chains.reserves import ChainReserves
from node.ports import ChainHeight, ReservesAsset
from proofs import assets as ast
from proofs import snapshot
from tests.functional.chains.conftest import BtcWorld, EthWorld
from tests.functional.chains.test_bitcoin_node import faucet_pays, intent, send
from tests.support import nodes
from tests.support import por_world as W
from tests.support.procs import wait_until
from tests.support.test_signer import PlainTestSigner

pytestmark = pytest.mark.functional
BIN = pathlib.Path(sys.executable).parent / "custody-verify"
NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)


class PlainKeyReservesSigner:
    """ReservesSigner over the chain tests' plain test key (TEST ONLY, see the module doc)."""

    def __init__(self, signer):
        self.signer = signer

    def sign_reserves(self, chain, vault_id, path, snapshot_id, root_hash):
        return self.signer.sign_one(path, ast.reserves_digest(chain, snapshot_id, root_hash))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("por-chains")


class BtcReservesWorld(BtcWorld):
    """The chain tests' Bitcoin world (btcd, our adapter, the faucet), with btcd's address index
    on: custody-verify re-reads balances with searchrawtransactions."""

    def __init__(self, workdir):  # noqa: super().__init__ would start btcd without the index
        from chains.bitcoin import tx as btx

        self.workdir = workdir
        self.signer = PlainTestSigner("custody-test-vault")
        self.faucet_signer = PlainTestSigner("faucet-outside-wallet")
        self.faucet_path = (1, 0)
        faucet_address = btx.p2wpkh_address(self.faucet_signer.vault_keys().child_public_key(self.faucet_path), "regtest")
        self.node = nodes.Btcd(workdir / "btcd", faucet_address)
        self.node.proc.argv.append("--addrindex")
        self.node.start()
        self.ours = self.adapter("ours", self.signer)
        self.faucet = self.adapter("faucet", self.faucet_signer)
        self.faucet.address("faucet", self.faucet_path)


@pytest.fixture(scope="module")
def btc(workdir):
    world = BtcReservesWorld(workdir)
    try:
        world.node.generate(110)  # the faucet's first coinbases mature
        yield world
    finally:
        world.node.stop()


@pytest.fixture(scope="module")
def eth(workdir):
    world = EthWorld(workdir)
    try:
        yield world
    finally:
        world.node.stop()


def mine_and_scan(btc, n=1):
    btc.node.generate(n)
    wait_until(lambda: btc.ours.scan().tip_height == btc.node.height(), 30, "our adapter scanned to btcd's tip")


def verify_assets(world, flag, url):
    files = world.write_files("acct-a")
    return subprocess.run([str(BIN), "assets", files["assets"], "--signed-header", files["header"], "--public-key",
                           world.public_key_hex, flag, url], capture_output=True, text=True, timeout=120)


def take(tmp, chains, reserves, signer, assets, balances):
    store = snapshot.SnapshotStore(tmp / "store")
    key = W.Ed25519PrivateKey.generate()
    published = snapshot.take_snapshot(W.TableLiabilities(balances, assets=assets, chains=chains), reserves, signer,
                                       store, key, NOW)
    return W.World(tmp, store, key, W.public_hex(key), published)


def test_bitcoin_balances_at_the_snapshot_height(btc, tmp_path):
    a0 = btc.ours.address("ours", (0, 0))
    a1 = btc.ours.address("ours", (0, 1))
    faucet_pays(btc, a0, 70_000_000, "por-pay-1")
    mine_and_scan(btc)
    h1 = btc.ours.reserves_height()
    assert h1.height == btc.node.height() and h1.block_hash == btc.node.call("getblockhash", h1.height)
    at_h1 = btc.ours.funded_addresses((h1,))
    assert [(r.address, r.asset, r.path, r.balance) for r in at_h1] == [(a0, "BTC", (0, 0), 70_000_000)]

    # Later: we pay out of a0 (change comes back to a change address) and the faucet pays a1.
    txid = send(btc, btc.ours, btc.signer, intent("por-out-1", [(btc.faucet.address("faucet", (1, 0)), 20_000_000)]))
    wait_until(lambda: txid in btc.node.mempool(), 10, f"{txid} in btcd's mempool")
    faucet_pays(btc, a1, 5_000_000, "por-pay-2")
    mine_and_scan(btc)
    h2 = btc.ours.reserves_height()
    at_h2 = {r.address: r.balance for r in btc.ours.funded_addresses((h2,))}
    assert a0 not in at_h2 and at_h2[a1] == 5_000_000
    assert 70_000_000 - 20_000_000 - 10_000 < sum(at_h2.values()) - 5_000_000 < 70_000_000 - 20_000_000  # change, less the fee
    # The older height still shows what it held then.
    assert [(r.address, r.balance) for r in btc.ours.funded_addresses((h1,))] == [(a0, 70_000_000)]

    # The snapshot at h1, re-read by custody-verify from btcd, agrees.
    reserves = ChainReserves({"bitcoin": btc.ours})
    assets = (ReservesAsset("BTC", "bitcoin", 8),)
    world = take(tmp_path, (h1,), reserves, PlainKeyReservesSigner(btc.signer), assets, {"acct-a": (60_000_000,), "acct-b": (1,)})
    assert world.published.signed_header["header"]["reserves"] == [{"asset": "BTC", "amount": "70000000", "addresses": 1}]
    auth_url = btc.node.url.replace("http://", f"http://{nodes.BTCD_RPC_USER}:{nodes.BTCD_RPC_PASSWORD}@")
    r = verify_assets(world, "--bitcoin-rpc", auth_url)
    assert r.returncode == 0, r.stderr
    assert "valid: 1 BTC balances re-read from the node at height" in r.stdout, r.stdout
    assert "BTC: reserves 70000000 / liabilities 60000001 = 1.1666" in r.stdout, r.stdout


def test_bitcoin_refuses_a_height_not_scanned_or_reorged(btc):
    tip = btc.ours.reserves_height()
    with pytest.raises(ChainError) as e:
        btc.ours.funded_addresses((ChainHeight("bitcoin", "regtest", tip.height + 5, "00" * 32),))
    assert e.value.reason == "not_scanned_to_snapshot_height"
    with pytest.raises(ChainError) as e:
        btc.ours.funded_addresses((ChainHeight("bitcoin", "regtest", tip.height, "00" * 32),))
    assert e.value.reason == "snapshot_block_reorged"
    with pytest.raises(ChainError) as e:
        ChainReserves({"bitcoin": btc.ours}).funded_addresses((ChainHeight("ethereum", "1337", 1, "00" * 32),))
    assert e.value.reason == "reserves_chain_not_configured"


def test_bitcoin_snapshot_block_reorged_out(btc):
    """A snapshot whose block left the chain is refused; after our scan rolls back and follows
    the new chain, the new height reads again, agreeing with btcd's own UTXO set."""
    a2 = btc.ours.address("ours", (0, 2))
    txid = faucet_pays(btc, a2, 3_000_000, "por-pay-reorg")
    mine_and_scan(btc)
    old = btc.ours.reserves_height()
    assert {r.address: r.balance for r in btc.ours.funded_addresses((old,))}[a2] == 3_000_000
    btc.node.call("invalidateblock", old.block_hash)  # the block paying a2 leaves the chain
    btc.node.generate(2)
    with pytest.raises(ChainError) as e:
        btc.ours.funded_addresses((old,))
    assert e.value.reason == "snapshot_block_reorged"
    wait_until(lambda: btc.ours.scan().tip_height == btc.node.height(), 30, "our adapter followed the new chain")
    new = btc.ours.reserves_height()
    assert new.height == old.height + 1 and new.block_hash != old.block_hash
    at_new = {r.address: r.balance for r in btc.ours.funded_addresses((new,))}
    # btcd's view: is the payment to a2 an unspent output of the new chain (mined again) or not?
    on_chain = 0
    for vout in range(2):
        out = btc.node.call("gettxout", txid, vout, False)
        if out and a2 in (out["scriptPubKey"].get("addresses") or [out["scriptPubKey"].get("address")]):
            on_chain += round(out["value"] * 100_000_000)  # btcd reports BTC; test-side only
    print(f"after the reorg: a2 holds {on_chain} on the new chain")
    assert at_new.get(a2, 0) == on_chain, (at_new.get(a2), on_chain)


def test_ethereum_balances_at_the_block_number(eth, tmp_path):
    a0 = eth.ours.address("ours", (0, 0))
    a1 = eth.ours.address("ours", (0, 1))
    eth.pay_eth(a0, 3 * 10**18)
    eth.pay_token(a0, 1_000_000)
    eth.ours.scan()
    h1 = eth.ours.reserves_height()
    assert h1.height == eth.node.height()
    got = sorted((r.address, r.asset, r.balance) for r in eth.ours.funded_addresses((h1,)))
    assert got == sorted([(a0, "ETH", 3 * 10**18), (a0, eth.asset, 1_000_000)])

    eth.pay_eth(a1, 10**17)  # later blocks: more ETH, and the faucet tops a0's tokens up
    eth.pay_token(a0, 500)
    eth.ours.scan()
    h2 = eth.ours.reserves_height()
    assert h2.height > h1.height
    at_h2 = {(r.address, r.asset): r.balance for r in eth.ours.funded_addresses((h2,))}
    assert at_h2 == {(a0, "ETH"): 3 * 10**18, (a0, eth.asset): 1_000_500, (a1, "ETH"): 10**17}
    assert sorted((r.address, r.asset, r.balance) for r in eth.ours.funded_addresses((h1,))) == got

    reserves = ChainReserves({"ethereum": eth.ours})
    assets = (ReservesAsset("ETH", "ethereum", 18), ReservesAsset(eth.asset, "ethereum", 6))
    world = take(tmp_path, (h1,), reserves, PlainKeyReservesSigner(eth.signer), assets,
                 {"acct-a": (2 * 10**18, 1_000_000), "acct-b": (10**18, 0)})
    r = verify_assets(world, "--ethereum-rpc", eth.node.url)
    assert r.returncode == 0, r.stderr
    assert f"valid: 1 ETH balances re-read from the node at height {h1.height}" in r.stdout, r.stdout
    assert f"valid: 1 {eth.asset} balances re-read from the node at height {h1.height}" in r.stdout, r.stdout
    assert "ETH: reserves 3000000000000000000 / liabilities 3000000000000000000 = 1.0000" in r.stdout, r.stdout
    with pytest.raises(ChainError) as e:
        eth.ours.funded_addresses((ChainHeight("ethereum", "1337", h1.height, "00" * 32),))
    assert e.value.reason == "snapshot_block_reorged"

    # A token balance the chain does not show at that height is caught by the re-read.
    class Overstated:
        def funded_addresses(self, chains):
            return [dataclasses.replace(a, balance=a.balance + 1) if a.asset == eth.asset else a
                    for a in reserves.funded_addresses(chains)]

    world = take(tmp_path / "overstated", (h1,), Overstated(), PlainKeyReservesSigner(eth.signer), assets,
                 {"acct-a": (2 * 10**18, 1_000_000)})
    r = verify_assets(world, "--ethereum-rpc", eth.node.url)
    assert r.returncode == 1 and r.stderr.startswith("invalid: balance_differs_on_chain"), r.stderr


def test_only_the_snapshot_assets_are_read(eth):
    h = eth.ours.reserves_height()
    only_eth = ChainReserves({"ethereum": eth.ours}, assets={"ETH"})
    got = only_eth.funded_addresses((h,))
    assert got and {a.asset for a in got} == {"ETH"}
