"""Fixtures for the chain adapters against real nodes: one btcd / Anvil per test module with a
fresh datadir and free ports, stopped by pid; adapter state on SQLite in the module's temp dir."""

from __future__ import annotations

import pytest

from chains.bitcoin.adapter import BitcoinAdapter
from chains.bitcoin.rpc import BitcoinRpc
from chains.state import ChainState, make_engine
from node.log import Secret
from tests.support import nodes
from tests.support.test_signer import PlainTestSigner

pytestmark = pytest.mark.functional

BTC_CONFIRMATIONS = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


class BtcWorld:
    """btcd plus two adapters: `ours` (the custody vault) and `faucet` (an outside wallet that
    the node mines to; it pays our deposit addresses). Both sign with plain test keys."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.signer = PlainTestSigner("custody-test-vault")
        self.faucet_signer = PlainTestSigner("faucet-outside-wallet")
        self.faucet_path = (1, 0)
        from chains.bitcoin import tx as btx

        faucet_address = btx.p2wpkh_address(self.faucet_signer.vault_keys().child_public_key(self.faucet_path), "regtest")
        self.node = nodes.Btcd(workdir / "btcd", faucet_address).start()
        self.ours = self.adapter("ours", self.signer)
        self.faucet = self.adapter("faucet", self.faucet_signer)
        assert self.faucet.address("faucet", self.faucet_path) == faucet_address

    def adapter(self, name: str, signer: PlainTestSigner, confirmations: int = BTC_CONFIRMATIONS) -> BitcoinAdapter:
        rpc = BitcoinRpc(self.node.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
        state = ChainState(make_engine(f"sqlite:///{self.workdir / (name + '.db')}"), "bitcoin:regtest")
        a = BitcoinAdapter(rpc, state, "regtest", confirmations=confirmations, fee_rate_fallback_sat_vb=2, start_height=0)
        a.register_vault(name, signer.vault_keys())
        return a


@pytest.fixture(scope="module")
def btc(workdir):
    world = BtcWorld(workdir)
    try:
        yield world
    finally:
        world.node.stop()
