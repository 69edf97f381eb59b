"""The deposit tests' world, all real: btcd in regtest, Anvil with a test ERC-20, three
`custody signer` processes over gRPC + mTLS (2-of-3, one keygen: the hot vault), and the node's
store on SQLite or on PostgreSQL. The processes and the node-side helpers are those of
tests/functional/withdrawals (one set per package here); the node is driven through the
production composition root, `api.withdrawals_root.World`, built from a worker config file —
the same object `custody withdrawals worker` runs.

Shortcuts, each said here: fixture pre-params in the signers (never in production); the faucet
and Anvil's funded account stand for the outside world paying us; the two databases' nodes
share one hot vault, so each starts its deposit-address counter elsewhere (`first_index`).
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile
import uuid

import pytest
import sqlalchemy as sa

from api.withdrawals_root import World, load_config
from node import invariants
from tests.functional.withdrawals.conftest import ROOT, Node, Shared
from tests.support import nodes
from tests.support.procs import Proc, wait_until

pytestmark = pytest.mark.functional

BTC_DEPOSIT_CONFIRMATIONS = 2
SWEEP_MIN = {"BTC": 100_000, "ETH": 10**15, "token": 1_000}


def worker_config(node: Node, first_index: int, start_height: int, eth_start_height: int) -> pathlib.Path:
    s = node.shared
    pw = node.workdir / "btc-rpc-password"
    pw.write_text(nodes.BTCD_RPC_PASSWORD)
    schema = f'database_schema = "{node.schema}"\n' if node.schema else ""
    path = node.workdir / "worker.toml"
    path.write_text(f"""environment = "test"
database_url = "{node.url}"
{schema}chain_state_url = "sqlite:///{node.workdir / 'world-chains.db'}"
cluster_file = "{s.cluster.dir / 'cluster.json'}"
[confirmations]
bitcoin = 1
ethereum = 1
[bitcoin]
network = "regtest"
rpc_url = "{s.btcd.url}"
rpc_user = "{nodes.BTCD_RPC_USER}"
rpc_password_file = "{pw}"
fee_rate_fallback_sat_vb = 2
deposit_confirmations = {BTC_DEPOSIT_CONFIRMATIONS}
start_height = {start_height}
[ethereum]
chain_id = {nodes.Anvil.CHAIN_ID}
rpc_url = "{s.anvil.url}"
deposit_confirmations = 1
tokens = ["{s.token_address}"]
start_height = {eth_start_height}
max_fee_per_gas_fallback_wei = {50 * 10**9}
max_priority_fee_per_gas_fallback_wei = {2 * 10**9}
[deposits]
vault = "hot"
first_index = {first_index}
[deposits.sweep_min]
BTC = "{SWEEP_MIN['BTC']}"
ETH = "{SWEEP_MIN['ETH']}"
"{s.token_asset}" = "{SWEEP_MIN['token']}"
""")
    return path


class DepositWorld:
    """The node on one database (tests' helpers) and the production World over the same store."""

    def __init__(self, node: Node):
        self.node = node
        self.shared = node.shared
        first = 0 if node.kind == "sqlite" else 1_000
        self.config = worker_config(node, first, self.shared.btcd.height(), self.shared.anvil.height())
        self.world = World(load_config(self.config))
        self.deposits = self.world.deposits

    def house_float(self, asset: str, amount: int) -> None:
        """The house's own money at the hot wallet, booked to fee revenue: what pays the network
        fees of sweeps, so that holdings stay at or above customer liabilities after them."""
        s = self.shared
        address = self.world.vault_address("hot", asset)
        if asset == "BTC":
            ref = s.faucet_pays(address, amount)
        else:
            txh = s.w3.eth.send_transaction({"from": s.payer, "to": address, "value": amount})
            s.w3.eth.wait_for_transaction_receipt(txh, timeout=10)
            ref = "0x" + bytes(txh).hex()
        self.node._book_deposit(None, asset, amount, ref)

    def step(self) -> None:
        """One worker pass, in-process: scan, credit, sweep, pipeline."""
        self.world.scan()
        self.world.sync_deposits()
        self.world.sweep()
        self.world.pipeline.run_once()

    def sync(self) -> None:
        self.world.scan()
        self.world.sync_deposits()

    def worker(self, name: str) -> Proc:
        """The real `custody withdrawals worker` process on this config."""
        env = {"PYTHONPATH": str(ROOT), "CUSTODY_LOG_LEVEL": "info"}
        return Proc(name, [sys.executable, "-m", "api.cli", "withdrawals", "worker", "--config", self.config],
                    self.node.workdir / "workers", env=env).start()

    def cli(self, action: str, *args: str) -> str:
        """`custody withdrawals <action> --config F ...` as a process; its stdout."""
        import subprocess

        res = subprocess.run([sys.executable, "-m", "api.cli", "withdrawals", action, "--config", str(self.config), *args],
                             capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert res.returncode == 0, f"custody withdrawals {action}: exit {res.returncode}\n{res.stderr[-3000:]}"
        return res.stdout

    def sweeps(self) -> list:
        from node.store.withdrawal_models import withdrawals as wt
        from node.withdrawals import Withdrawal

        with self.node.store.reading() as conn:
            rows = conn.execute(sa.select(wt).where(wt.c.kind == "sweep").order_by(wt.c.created_at_ns)).all()
        return [Withdrawal.from_row(r) for r in rows]

    def mine_while_confirming(self) -> None:
        for w in self.sweeps():
            if w.status == "confirming":
                (self.shared.btcd.generate(1) if w.chain == "bitcoin" else self.shared.anvil.mine(1))
                return

    def drive_sweeps(self, done, timeout_s: float, what: str) -> None:
        def reached():
            self.step()
            self.mine_while_confirming()
            bad = [w for w in self.sweeps() if w.status in ("failed", "rejected", "blocked", "cancelled")]
            assert not bad, f"sweeps ended badly: {[(w.id, w.status, w.sub_status) for w in bad]}"
            return done()

        wait_until(reached, timeout_s, what)

    def reconcile(self, assets: list[str]) -> dict[str, dict]:
        from node.rebalance import reconciliation

        self.world.scan()
        return {r["asset"]: r for r in reconciliation(self.world.withdrawals, self.world.balance, assets)}

    def check_ledger(self) -> None:
        violations = invariants.check(self.node.store)
        assert not violations, "ledger checker: " + "; ".join(map(str, violations))

    def close(self) -> None:
        self.world.close()
        self.node.close()


@pytest.fixture(scope="package")
def shared(request):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="deposits-"))
    failed_before = request.session.testsfailed
    s = Shared(workdir, vault_ids=("hot",))
    try:
        yield s
    finally:
        s.stop()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept deposits test dir for inspection: {workdir}")


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def dw(request, shared):
    workdir = shared.workdir / f"node-{request.param}"
    workdir.mkdir()
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'node.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"dp_{uuid.uuid4().hex[:12]}"
    d = DepositWorld(Node(shared, request.param, url, schema, workdir))
    try:
        yield d
    finally:
        d.close()
        if schema:
            eng = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
            with eng.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            eng.dispose()
