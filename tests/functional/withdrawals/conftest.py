"""The withdrawal tests' world, all real: three `custody signer` processes over gRPC + mTLS
(2-of-3), btcd in regtest, Anvil with a test ERC-20, and the node's store on SQLite or on
PostgreSQL. One cluster, btcd and Anvil per package; one keygen per vault (hot, cold), reused.

The node side (`Node`) is built per database. Nodes run one after the other (pytest groups the
tests by the `node` parameter), each funding its own deposit addresses of the shared vaults.

Shortcuts, each said here: fixture pre-params in the signers (tests/fixtures/preparams: never in
production); the "faucet" that pays our deposit addresses is an outside wallet with a plain test
key (it stands for the outside world, never for us); the node's risk clock runs two hours ahead
so that whitelist entries made by a test are past their time-lock, except where a test puts it
back (no sleeping).
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import signal
import tempfile
import time
import uuid

import pytest
import sqlalchemy as sa

from chains.bitcoin import tx as btx
from chains.bitcoin.adapter import BitcoinAdapter
from chains.bitcoin.rpc import BitcoinRpc
from chains.keys import Bip32VaultKeys
from chains.state import ChainState, make_engine
from node import invariants
from node.customers import CODE_DEPOSIT, Customers
from node.ledger import AccountKind, Ledger, LedgerKind, TransferCreate, TransferResult
from node.log import Secret
from node.pipeline import Pipeline
from node.ports import Payment, WithdrawalIntent
from node.store import open_store
from node.wallets import Wallets
from node.withdrawals import VAULT_WALLET_PATH, Withdrawals
from api.withdrawals_root import fee_of
from tests.support import nodes
from tests.support.cluster import LocalCluster
from tests.support.procs import wait_until
from tests.support.test_signer import PlainTestSigner

pytestmark = pytest.mark.functional

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOKEN_SOURCE = ROOT / "tests" / "functional" / "chains" / "TestToken.sol"
BTC = 100_000_000
ETH = 10**18
GWEI = 10**9
TOKEN_SUPPLY = 10**15
AUTO_MAX_SATS = 10_000_000  # 0.1 BTC: below it the hot vault signs without approvals
AUTO_MAX_WEI = ETH // 10
AUTO_MAX_TOKEN = 10**9
TIMELOCK_S = 3600
CONFIRMATIONS = {"bitcoin": 1, "ethereum": 1}
COLD_DELAY_S = 6  # the cold vault's delay after its quorum, in the node's and every peer's policy


def signer_vaults(vaults) -> str:
    """Appended to every peer's own policy once the vaults exist: the cold vault's own bands
    (two approvals) and delay, and both vaults' public keys as own destinations (refills pay
    the hot wallet, rebalances the cold one)."""
    lines = []
    for asset, amount_max in (("BTC", 10 * BTC), ("ETH", 10 * ETH)):
        lines += ["", "[[bands]]", 'vault = "cold"', f'asset = "{asset}"', f'amount_max = "{amount_max}"', "approvals_min = 2"]
    lines += ["", "[vaults.cold]", f"delay_s = {COLD_DELAY_S}"]
    for vid, v in sorted(vaults.items()):
        lines += ["", f"[own_destinations.{vid}]", f'public_key = "{v.public_key.hex()}"', f'chain_code = "{v.chain_code.hex()}"']
    return "\n".join(lines) + "\n"


def signer_bands(token_asset: str) -> str:
    """Appended to every peer's own policy: no approvals needed below the hot auto-approval
    bands (the peers' dev policy asks one approval up to 1 BTC / 1 ETH, two up to 50)."""
    lines = []
    for asset, amount_max, n in (("BTC", AUTO_MAX_SATS, 0), ("ETH", AUTO_MAX_WEI, 0), (token_asset, AUTO_MAX_TOKEN, 0),
                                 (token_asset, TOKEN_SUPPLY, 2)):
        lines += ["", "[[bands]]", f'asset = "{asset}"', f'amount_max = "{amount_max}"', f"approvals_min = {n}"]
    return "\n".join(lines) + "\n"


def node_policy(version: int, approvers: dict[str, str], token_asset: str, sanctions: pathlib.Path, blocked: pathlib.Path,
                velocity: str = "hold", rebalance: str = "", timelock_s: int = TIMELOCK_S) -> str:
    apr = "\n".join(f'{k} = "{v}"' for k, v in approvers.items())
    return f"""
version = {version}
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
ethereum = "{5 * 10**15}"
[kyc_tiers.standard.BTC]
per_withdrawal_max = "{2 * BTC}"
day_max = "{3 * BTC}"
month_max = "{10 * BTC}"
[kyc_tiers.standard.ETH]
per_withdrawal_max = "{2 * ETH}"
day_max = "{3 * ETH}"
month_max = "{10 * ETH}"
[kyc_tiers.standard."{token_asset}"]
per_withdrawal_max = "{10**12}"
day_max = "{10**12}"
month_max = "{10**13}"
[velocity]
exceeded = "{velocity}"
[whitelist]
required = true
timelock_s = {timelock_s}
[lists]
sanctions = ["{sanctions}"]
block = ["{blocked}"]
[anomaly]
history_min = 3
hold_multiple = 10
[[vaults]]
id = "hot"
kind = "hot"
delay_s = 0
bands = [{{ asset = "BTC", amount_max = "{AUTO_MAX_SATS}", approvals_min = 0 }},
         {{ asset = "BTC", amount_max = "{10 * BTC}", approvals_min = 2 }},
         {{ asset = "ETH", amount_max = "{AUTO_MAX_WEI}", approvals_min = 0 }},
         {{ asset = "ETH", amount_max = "{10 * ETH}", approvals_min = 2 }},
         {{ asset = "{token_asset}", amount_max = "{AUTO_MAX_TOKEN}", approvals_min = 0 }},
         {{ asset = "{token_asset}", amount_max = "{TOKEN_SUPPLY}", approvals_min = 2 }}]
[[vaults]]
id = "cold"
kind = "cold"
delay_s = {COLD_DELAY_S}
bands = [{{ asset = "BTC", amount_max = "{10 * BTC}", approvals_min = 2 }},
         {{ asset = "ETH", amount_max = "{10 * ETH}", approvals_min = 2 }}]
{rebalance}
"""


class Shared:
    """Processes shared by every test of the package."""

    def __init__(self, workdir: pathlib.Path, vault_ids: tuple[str, ...] = ("hot", "cold")):
        from web3 import Web3

        self.workdir = workdir
        # Anvil first: the peers' policies name the token's address.
        self.anvil = nodes.Anvil(workdir / "anvil").start()
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.url, request_kwargs={"timeout": 10}))
        self.payer = self.w3.eth.accounts[0]
        abi, bytecode = nodes.compile_solidity(TOKEN_SOURCE, "TestToken")
        txh = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(TOKEN_SUPPLY).transact({"from": self.payer})
        self.token_address = self.w3.eth.wait_for_transaction_receipt(txh, timeout=10)["contractAddress"]
        self.token = self.w3.eth.contract(address=self.token_address, abi=abi)
        self.token_asset = f"ERC20:{self.token_address}"
        # btcd mines to the faucet (an outside wallet with a plain test key).
        self.faucet_signer = PlainTestSigner("withdrawals-faucet-outside-wallet")
        faucet_address = btx.p2wpkh_address(self.faucet_signer.vault_keys().child_public_key((1, 0)), "regtest")
        self.btcd = nodes.Btcd(workdir / "btcd", faucet_address).start()
        self.btcd.generate(110)
        rpc = BitcoinRpc(self.btcd.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
        self.faucet = BitcoinAdapter(rpc, ChainState(make_engine(f"sqlite:///{workdir / 'faucet.db'}"), "bitcoin:regtest"),
                                     "regtest", confirmations=1, fee_rate_fallback_sat_vb=2, start_height=0)
        self.faucet.register_vault("faucet", self.faucet_signer.vault_keys())
        self.faucet.address("faucet", (1, 0))
        self.faucet.scan()
        # The signer cluster: 3 peers, any 2 sign.
        self.cluster = LocalCluster(workdir / "cluster", 3, 1, round_timeout_ms=20_000)
        for name in self.cluster.names:
            with open(self.cluster.dir / name / "policy.toml", "a") as f:
                f.write(signer_bands(self.token_asset))
        self.cluster.start_all()
        self.client = self.cluster.client()
        self.vaults = {v: self._keygen(v) for v in vault_ids}
        # Each operator adds the vaults' public keys and the cold vault's rules to its own
        # policy, read at start: a restart of every peer.
        for p in self.cluster.procs.values():
            p.popen.send_signal(signal.SIGTERM)  # all at once; stop_all then waits for each
        self.cluster.stop_all()
        for name in self.cluster.names:
            with open(self.cluster.dir / name / "policy.toml", "a") as f:
                f.write(signer_vaults(self.vaults))
        self.cluster.start_all()
        self.approver_keys = {a: self.cluster.approver(a) for a in ("approver-1", "approver-2")}
        self.sanctions = workdir / "sanctions.txt"
        self.blocked = workdir / "blocked.txt"
        self.sanctions.write_text("# test sanctions list\n")
        self.blocked.write_text("# test block list\n")
        self.outsider = PlainTestSigner("withdrawals-outside-destinations")
        self._dest = 0

    def _keygen(self, vault_id: str):
        """One keygen per vault. On this shared 2-core machine a ceremony can time out under
        load (an echo not back in time): one more attempt, then fail. An aborted keygen stores
        nothing (shares are committed only when every peer reports the same group key)."""
        from node.ports import SigningRefused

        try:
            return self.client.keygen(vault_id, tuple(self.cluster.names), 1)
        except SigningRefused as exc:
            print(f"keygen of {vault_id} failed once ({exc}); retrying")
            return self.client.keygen(vault_id, tuple(self.cluster.names), 1)

    def btc_destination(self) -> str:
        """A fresh outside address (not ours) to pay."""
        self._dest += 1
        return btx.p2wpkh_address(self.outsider.vault_keys().child_public_key((7, self._dest)), "regtest")

    def eth_destination(self) -> str:
        from chains.ethereum import tx as etx

        self._dest += 1
        return etx.address_of(self.outsider.vault_keys().child_public_key((8, self._dest)))

    def faucet_pays(self, address: str, amount: int) -> str:
        self.faucet.scan()
        it = WithdrawalIntent(f"faucet-{uuid.uuid4().hex[:12]}", "faucet", "bitcoin", "regtest", "BTC",
                              (Payment(address, amount),), 100_000)
        utx = self.faucet.build_withdrawal(it)
        signed = self.faucet.attach_signatures(utx, self.faucet_signer.sign(self.faucet.digests(utx, it)), it)
        txid = self.faucet.broadcast(signed)
        self.btcd.generate(1)
        self.faucet.scan()
        return txid

    def received_btc(self, address: str) -> list[tuple[str, int]]:
        """(txid, amount) of every mined output paying `address` (the exactly-once check)."""
        out = []
        for h in range(1, self.btcd.height() + 1):
            block = self.btcd.call("getblock", self.btcd.call("getblockhash", h), 2)
            for t in block.get("rawtx") or block.get("tx"):
                for o in t["vout"]:
                    if o["scriptPubKey"].get("address") == address or address in (o["scriptPubKey"].get("addresses") or []):
                        out.append((t["txid"], int(round(o["value"] * BTC))))  # btcd reports BTC; test-side only
        return out

    def stop(self) -> None:
        self.cluster.stop_all()
        self.btcd.stop()
        self.anvil.stop()


@pytest.fixture(scope="package")
def shared(request):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="withdrawals-"))
    failed_before = request.session.testsfailed
    s = Shared(workdir)
    try:
        yield s
    finally:
        s.stop()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept withdrawals test dir for inspection: {workdir}")


class RiskClock:
    """The node's screening clock: two hours ahead by default (see the module docstring)."""

    def __init__(self):
        self.offset_ns = 2 * TIMELOCK_S * 1_000_000_000

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns


class Node:
    """The node on one database: store, ledger, withdrawals, chain adapters (own state), the
    pipeline; customers funded by real deposits to our hot vault."""

    def __init__(self, shared: Shared, kind: str, url: str, schema: str | None, workdir: pathlib.Path):
        self.shared = shared
        self.kind = kind
        self.url = url
        self.schema = schema
        self.workdir = workdir
        self.store = open_store(url, schema=schema)
        self.ledger = Ledger(self.store)
        self.customers = Customers(self.ledger)
        self.wallets = Wallets(self.ledger)
        self.clock = RiskClock()
        self.chain_state_url = f"sqlite:///{workdir / 'chains.db'}"
        self.chain_engine = make_engine(self.chain_state_url)
        rpc = BitcoinRpc(shared.btcd.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
        self.btc = BitcoinAdapter(rpc, ChainState(self.chain_engine, "bitcoin:regtest"), "regtest", confirmations=1,
                                  fee_rate_fallback_sat_vb=2, start_height=shared.btcd.height())
        from chains.ethereum.adapter import EthereumAdapter

        self.eth = EthereumAdapter.connect(shared.anvil.url, ChainState(self.chain_engine, f"ethereum:{nodes.Anvil.CHAIN_ID}"),
                                           nodes.Anvil.CHAIN_ID, confirmations={"ETH": 1, shared.token_asset: 1},
                                           max_fee_per_gas_fallback=50 * GWEI, max_priority_fee_per_gas_fallback=2 * GWEI,
                                           start_height=shared.anvil.height())
        self.chains = {"bitcoin": self.btc, "ethereum": self.eth}
        self.withdrawals = Withdrawals(self.ledger, {"bitcoin": "regtest", "ethereum": str(nodes.Anvil.CHAIN_ID)},
                                       wall_clock_ns=self.clock)
        for vid, vault in shared.vaults.items():
            self.withdrawals.register_vault(vault, vid, actor="test:setup")
            for a in self.chains.values():
                a.register_vault(vid, Bip32VaultKeys(vault.public_key, vault.chain_code))
        self.approvers = {a: k.verify_key.encode().hex() for a, k in shared.approver_keys.items()}
        self.policy_version = 1
        self.withdrawals.bootstrap_policy(self.policy_text(), actor="test:setup")
        for asset, scale in (("BTC", 8), ("ETH", 18), (shared.token_asset, 6)):
            self.ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor="test:setup")
            for vid in ("hot", "cold"):
                self.wallets.create_wallet(f"{vid}:{asset}", vid, asset, vid, actor="test:setup")
        self.pipeline = Pipeline(self.withdrawals, self.chains, shared.client, CONFIRMATIONS,
                                 lambda chain, txid, wid: fee_of(self.chains[chain], txid, wid))
        self._deposit_index = {"hot": 100 if kind == "sqlite" else 200}
        self.treasury = self.customer("treasury")

    def policy_text(self, **kw) -> str:
        return node_policy(self.policy_version, self.approvers, self.shared.token_asset, self.shared.sanctions,
                           self.shared.blocked, **kw)

    def change_policy(self, **kw) -> None:
        """A new policy version through the approval flow: proposed, then signed by two approvers."""
        from node.risk import policy_digest

        self.policy_version += 1
        text = self.policy_text(**kw)
        v = self.withdrawals.propose_policy(text, actor="staff:risk")
        statuses = [self.withdrawals.approve_policy(v, a, k.sign(policy_digest(text)).signature)
                    for a, k in self.shared.approver_keys.items()]
        assert statuses == ["proposed", "active"], statuses
        assert self.withdrawals.policy().version == v

    # ---------------------------------------------------------------- money in
    def customer(self, name: str, tier: str = "standard") -> str:
        self.customers.create_customer(name, name, actor="test:setup")
        sub = f"{name}.main"
        self.withdrawals.set_profile(sub, tier, actor="test:setup")
        return sub

    def _book_deposit(self, sub: str | None, asset: str, amount: int, ref: str) -> None:
        """`sub` None: the house's own money (a float for network fees, credited to fee revenue),
        which is what keeps on-chain holdings at or above customer liabilities after fees."""
        if sub is None:
            cust = self.customers.system_account(asset, AccountKind.FEE_REVENUE, actor="test:setup")
        else:
            cust = self.customers.customer_account(sub, asset, actor="test:setup")
        hot = [w for w in self.wallets.wallets(vault_id="hot", asset=asset)][0].account_id
        [r] = self.ledger.create_transfers([TransferCreate(f"dep:{ref[-40:]}", hot, cust, amount, asset, CODE_DEPOSIT)], actor="test:deposits")
        assert r is TransferResult.ok, r

    def deposit_btc(self, sub: str | None, amount: int) -> None:
        """A real deposit: the faucet pays a fresh deposit address of our hot vault; booked."""
        i = self._deposit_index["hot"] = self._deposit_index["hot"] + 1
        address = self.btc.address("hot", (0, i))
        txid = self.shared.faucet_pays(address, amount)
        self.btc.scan()
        self._book_deposit(sub, "BTC", amount, txid)

    def deposit_eth(self, sub: str, asset: str, amount: int) -> None:
        hot = self.eth.address("hot", VAULT_WALLET_PATH)
        s = self.shared
        if asset == "ETH":
            txh = s.w3.eth.send_transaction({"from": s.payer, "to": hot, "value": amount})
        else:
            txh = s.token.functions.transfer(hot, amount).transact({"from": s.payer})
        s.w3.eth.wait_for_transaction_receipt(txh, timeout=10)
        self._book_deposit(sub, asset, amount, "0x" + bytes(txh).hex())

    def fund(self, sub: str, asset: str, amount: int) -> None:
        """From the treasury customer (already deposited on chain): a ledger-only transfer."""
        r = self.customers.internal_transfer(f"fund-{uuid.uuid4().hex[:12]}", self.treasury, sub, asset, amount, actor="test:setup")
        assert r.result is TransferResult.ok, r

    def whitelist(self, sub: str, asset: str, address: str) -> None:
        self.withdrawals.whitelist(sub, asset, address, actor=f"client:{sub}")

    def chain_balance(self, asset: str, vault_id: str) -> int:
        """What our addresses of `vault_id` hold on chain (bitcoin: our UTXO set after a scan)."""
        assert asset == "BTC", "the rebalancing tests move bitcoin"
        self.btc.scan()
        return self.btc.balance(vault_id)

    def vault_address(self, vault_id: str, asset: str) -> str:
        return self.btc.address(vault_id, VAULT_WALLET_PATH)

    # ---------------------------------------------------------------- driving
    def step(self) -> None:
        self.btc.scan()
        self.pipeline.run_once()

    def drive(self, wid: str, status: str, timeout_s: float = 90, mine: bool = True):
        """Runs the pipeline (mining a block when a transaction waits) until `wid` reaches `status`."""
        def reached():
            self.step()
            w = self.withdrawals.get(wid)
            if mine and w.status == "confirming":
                (self.shared.btcd.generate(1) if w.chain == "bitcoin" else self.shared.anvil.mine(1))
            return w.status == status or w.status in ("failed", "rejected", "blocked", "cancelled", "completed")

        wait_until(reached, timeout_s, f"withdrawal {wid} reaches {status}")
        w = self.withdrawals.get(wid)
        assert w.status == status, f"withdrawal {wid}: expected {status}, got {w.status} ({w.sub_status})"
        return w

    def check_ledger(self) -> None:
        violations = invariants.check(self.store)
        assert not violations, "ledger checker: " + "; ".join(map(str, violations))

    def close(self) -> None:
        self.store.dispose()
        self.chain_engine.dispose()


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def node(request, shared):
    workdir = shared.workdir / f"node-{request.param}"
    workdir.mkdir()
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'node.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"wd_{uuid.uuid4().hex[:12]}"
    n = Node(shared, request.param, url, schema, workdir)
    n.deposit_btc(n.treasury, 20 * BTC)
    n.deposit_btc(None, BTC // 10)  # the house's float for network fees
    n.deposit_eth(n.treasury, "ETH", 5 * ETH)
    n.deposit_eth(n.treasury, shared.token_asset, 10**12)
    try:
        yield n
    finally:
        n.close()
        if schema:
            eng = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
            with eng.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            eng.dispose()


def digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()
