"""Fixtures for the chain adapters against real nodes: one btcd / Anvil per test module with a
fresh datadir and free ports, stopped by pid; adapter state on SQLite in the module's temp dir.
The scanner only reports observations; `Books` is the node's crediting (node/deposits/) over an
adapter, which decides the deposit statuses these tests check."""

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
BOOKS_FIRST_INDEX = 100  # addresses the books issue: (0, 100), (0, 101), ... (the tests' own paths stay below)


class Books:
    """A node store (SQLite file, or a PostgreSQL schema) with the ledgers, one customer and
    node.deposits.Deposits over `adapter` (vault "ours")."""

    def __init__(self, url: str, adapter, assets: dict[str, int], *, schema: str | None = None):
        from node.customers import Customers
        from node.deposits import Deposits
        from node.ledger import Ledger, LedgerKind
        from node.store import open_store

        self.adapter = adapter
        self.store = open_store(url, schema=schema)
        ledger = Ledger(self.store)
        for asset, scale in assets.items():
            ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor="test")
        Customers(ledger).create_customer("cust", "Customer", actor="test")
        self.deps = Deposits(ledger, {adapter.chain: adapter}, vault_id="ours", first_index=BOOKS_FIRST_INDEX)

    def issue(self, asset: str) -> str:
        return self.deps.issue_address("cust.main", asset, actor="test").address

    def sync(self, adapter=None):
        return self.deps.sync(adapter or self.adapter)

    def of(self, txid: str) -> list[tuple]:
        """(status, epoch, amount, address) of each record of the deposits paid by `txid`."""
        return [(d.status, d.epoch, d.amount, d.address) for d in self.deps.list("cust.main", limit=500) if d.txid == txid]

    def all(self) -> list:
        return self.deps.list("cust.main", limit=500)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


class BtcWorld:
    """btcd plus two adapters: `ours` (the custody vault) and `faucet` (an outside wallet that
    the node mines to; it pays our deposit addresses). Both sign with plain test keys."""

    def __init__(self, workdir, txindex: bool = True):
        self.workdir = workdir
        self.signer = PlainTestSigner("custody-test-vault")
        self.faucet_signer = PlainTestSigner("faucet-outside-wallet")
        self.faucet_path = (1, 0)
        from chains.bitcoin import tx as btx

        faucet_address = btx.p2wpkh_address(self.faucet_signer.vault_keys().child_public_key(self.faucet_path), "regtest")
        self.node = nodes.Btcd(workdir / "btcd", faucet_address, txindex=txindex).start()
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


@pytest.fixture(scope="module")
def btc_books(btc, workdir):
    books = Books(f"sqlite:///{workdir / 'btc-node.db'}", btc.ours, {"BTC": 8})
    yield books
    books.store.dispose()


ETH_CONFIRMATIONS = 3
TOKEN_SOURCE = __import__("pathlib").Path(__file__).with_name("TestToken.sol")
TOKEN_SUPPLY = 10**15
GWEI = 10**9


class EthWorld:
    """Anvil, the test ERC-20 (compiled now with solc-js, deployed by Anvil's unlocked dev
    account, which also plays the outside payer), and our adapter."""

    def __init__(self, workdir):
        from web3 import Web3

        self.workdir = workdir
        self.node = nodes.Anvil(workdir / "anvil").start()
        self.w3 = Web3(Web3.HTTPProvider(self.node.url, request_kwargs={"timeout": 10}))
        self.payer = self.w3.eth.accounts[0]
        abi, bytecode = nodes.compile_solidity(TOKEN_SOURCE, "TestToken")
        txh = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(TOKEN_SUPPLY).transact({"from": self.payer})
        self.token_address = self.w3.eth.wait_for_transaction_receipt(txh, timeout=10)["contractAddress"]
        self.token = self.w3.eth.contract(address=self.token_address, abi=abi)
        self.asset = f"ERC20:{self.token_address}"
        self.signer = PlainTestSigner("custody-test-vault")
        self.ours = self.adapter()

    def adapter(self):
        from chains.ethereum.adapter import EthereumAdapter

        state = ChainState(make_engine(f"sqlite:///{self.workdir / 'eth.db'}"), f"ethereum:{nodes.Anvil.CHAIN_ID}")
        a = EthereumAdapter.connect(
            self.node.url,
            state,
            nodes.Anvil.CHAIN_ID,
            confirmations={"ETH": ETH_CONFIRMATIONS, self.asset: ETH_CONFIRMATIONS},
            max_fee_per_gas_fallback=50 * GWEI,
            max_priority_fee_per_gas_fallback=2 * GWEI,
            start_height=0,
        )
        a.register_vault("ours", self.signer.vault_keys())
        return a

    def pay_eth(self, to: str, wei: int) -> str:
        return "0x" + bytes(self.w3.eth.send_transaction({"from": self.payer, "to": to, "value": wei})).hex()

    def pay_token(self, to: str, units: int) -> str:
        return "0x" + bytes(self.token.functions.transfer(to, units).transact({"from": self.payer})).hex()


@pytest.fixture(scope="module")
def eth(workdir):
    world = EthWorld(workdir)
    try:
        yield world
    finally:
        world.node.stop()


@pytest.fixture(scope="module")
def eth_books(eth, workdir):
    books = Books(f"sqlite:///{workdir / 'eth-node.db'}", eth.ours, {"ETH": 18, eth.asset: 6})
    yield books
    books.store.dispose()
