"""A deposit and a withdrawal driven only through HTTP against a real `custody node` process:
btcd in regtest, three `custody signer` processes (any 2 sign, gRPC + mTLS), the node's store
on SQLite and then on PostgreSQL (one node process per database, btcd and the cluster shared), and an independent webhook receiver that checks every Custody-Signature.

    customer and sub-account -> deposit address -> the outside faucet pays it on regtest ->
    deposit.credited received -> whitelist the destination -> withdrawal above the auto-approval
    band -> approval.requested -> two approvers sign the intent they read from /v1/approvals ->
    the node's pipeline signs through the cluster and broadcasts -> mined -> completed, the
    balance right, withdrawal.completed received and signature-checked.

Set-up done as an operator would, not through the API, each said here: the hot vault's DKG
(the test's ClusterClient, as `custody dev up` does) and its public part in vaults.json; the
risk policy file; the bootstrap admin key (`custody apikey create` on the database); the
sub-account's KYC tier (compliance staff, through the domain: no API resource sets it); and a
house float paid on chain to the hot wallet and booked to it (the hot wallet pays withdrawals;
moving customer deposits from deposit addresses to the hot wallet is the deposit sweeper's job,
not on this branch). Fixture pre-params in the signers (never in production).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

import httpx
import pytest

from chains.bitcoin import tx as btx
from chains.bitcoin.adapter import BitcoinAdapter
from chains.bitcoin.rpc import BitcoinRpc
from chains.state import ChainState, make_engine
from node.log import Secret
from node.ports import Payment, WithdrawalIntent
from tests.support import nodes
from tests.support.cluster import LocalCluster
from tests.support.procs import Proc, free_port, wait_until
from tests.support.secrets_key import secrets_key_file
from tests.support.test_signer import PlainTestSigner

pytestmark = pytest.mark.functional

ROOT = pathlib.Path(__file__).resolve().parents[3]
API_TESTS = ROOT / "tests" / "functional" / "api"
sys.path.insert(0, str(API_TESTS))
from api_procs import received, start_receiver  # noqa: E402

BTC = 100_000_000
AUTO_MAX_SATS = 10_000_000  # below 0.1 BTC the hot vault pays without approvals


def policy_text(approvers: dict[str, str]) -> str:
    apr = "\n".join(f'{k} = "{v}"' for k, v in approvers.items())
    return f"""version = 1
[approvers]
{apr}
[fee_max]
bitcoin = "100000"
[kyc_tiers.standard.BTC]
per_withdrawal_max = "{2 * BTC}"
day_max = "{3 * BTC}"
month_max = "{10 * BTC}"
[whitelist]
required = true
timelock_s = 0
[[vaults]]
id = "hot"
kind = "hot"
delay_s = 0
bands = [{{ asset = "BTC", amount_max = "{AUTO_MAX_SATS}", approvals_min = 0 }},
         {{ asset = "BTC", amount_max = "{10 * BTC}", approvals_min = 2 }}]
"""


class Faucet:
    """An outside wallet (a plain test key: it stands for the outside world, never for us)
    that btcd mines to and that pays our addresses."""

    def __init__(self, workdir: pathlib.Path, btcd: nodes.Btcd):
        self.btcd = btcd
        self.signer = PlainTestSigner("node-flow-faucet-outside-wallet")
        rpc = BitcoinRpc(btcd.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
        self.adapter = BitcoinAdapter(rpc, ChainState(make_engine(f"sqlite:///{workdir / 'faucet.db'}"), "bitcoin:regtest"),
                                      "regtest", confirmations=1, fee_rate_fallback_sat_vb=2, start_height=0)
        self.adapter.register_vault("faucet", self.signer.vault_keys())
        self.address = self.adapter.address("faucet", (1, 0))

    def pays(self, address: str, amount: int) -> str:
        self.adapter.scan()
        it = WithdrawalIntent(f"faucet-{uuid.uuid4().hex[:12]}", "faucet", "bitcoin", "regtest", "BTC", (Payment(address, amount),),
                              100_000)
        utx = self.adapter.build_withdrawal(it)
        signed = self.adapter.attach_signatures(utx, self.signer.sign(self.adapter.digests(utx, it)), it)
        txid = self.adapter.broadcast(signed)
        self.btcd.generate(1)
        return txid


class World:
    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.procs: list[Proc] = []
        faucet_address = btx.p2wpkh_address(PlainTestSigner("node-flow-faucet-outside-wallet").vault_keys().child_public_key((1, 0)),
                                            "regtest")
        self.btcd = nodes.Btcd(workdir / "btcd", faucet_address).start()
        self.cluster = None
        try:
            self.btcd.generate(110)
            self.faucet = Faucet(workdir, self.btcd)
            assert self.faucet.address == faucet_address
            self.cluster = LocalCluster(workdir / "cluster", 3, 1, round_timeout_ms=20_000)
            self.cluster.start_all()
            try:
                vault = self.cluster.client().keygen("hot", tuple(self.cluster.names), 1)
            except Exception as exc:  # noqa: BLE001 - a ceremony can time out under load: one more attempt
                print(f"keygen failed once ({exc}); retrying")
                vault = self.cluster.client().keygen("hot", tuple(self.cluster.names), 1)
            self.vault = vault
            self.approver_keys = {a: self.cluster.approver(a) for a in ("approver-1", "approver-2")}
            (workdir / "vaults.json").write_text(json.dumps({"hot": {
                "vault_id": vault.vault_id, "committee": list(vault.committee), "threshold": vault.threshold,
                "public_key": vault.public_key.hex(), "chain_code": vault.chain_code.hex(), "kind": "hot"}}))
            (workdir / "policy.toml").write_text(policy_text({a: k.verify_key.encode().hex() for a, k in self.approver_keys.items()}))
            (workdir / "btc-rpc-password").write_text(nodes.BTCD_RPC_PASSWORD)
        except BaseException:
            self.stop()  # nothing left running when the set-up fails
            raise

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop_all()
        self.btcd.stop()


class Node:
    """A `custody node` process over one database (SQLite file or a PostgreSQL schema of its
    own), sharing btcd and the cluster; its own chain state, API key and webhook receiver."""

    def __init__(self, world: World, kind: str, database_url: str, schema: str | None):
        self.world = world
        self.kind = kind
        self.workdir = world.workdir / f"node-{kind}"
        self.workdir.mkdir()
        self.procs: list[Proc] = []
        self.database_url = database_url
        self.schema = schema
        self.port = free_port()
        self.config = self.workdir / "node.toml"
        schema_line = f'database_schema = "{schema}"\n' if schema else ""
        w = world.workdir
        self.config.write_text(f"""environment = "test"
database_url = "{database_url}"
{schema_line}chain_state_url = "sqlite:///{self.workdir / 'chains.db'}"
cluster_file = "{world.cluster.dir / 'cluster.json'}"
vaults_file = "{w / 'vaults.json'}"
policy_file = "{w / 'policy.toml'}"
[confirmations]
bitcoin = 1
[bitcoin]
network = "regtest"
rpc_url = "{world.btcd.url}"
rpc_user = "{nodes.BTCD_RPC_USER}"
rpc_password_file = "{w / 'btc-rpc-password'}"
fee_rate_fallback_sat_vb = 2
deposit_confirmations = 1
start_height = {world.btcd.height()}
[api]
host = "127.0.0.1"
port = {self.port}
environment = "development"
secrets_key_file = "{secrets_key_file(w)}"
webhook_allow_insecure_urls = true
webhook_backoff_base_ms = 200
[deposits]
vault = "hot"
[workers]
scan_every_s = 0.5
pipeline_every_s = 0.2
sweep_every_s = 1
""")
        self.node = Proc("node", [sys.executable, "-m", "api.cli", "node", "--config", self.config], self.workdir,
                         env={"PYTHONPATH": str(ROOT)}).start()
        self.procs.append(self.node)
        self.url = f"http://127.0.0.1:{self.port}"
        self.node.wait_ready(lambda: _ready(self.url), 120, "the node answers /v1/ready")
        # The bootstrap admin key, as an operator makes it: on the database.
        self.key_pem = self.workdir / "ops.pem"
        argv = [sys.executable, "-m", "api.cli", "apikey", "create", "--database-url", database_url, "--name", "ops",
                "--scopes", "read,deposit,withdraw,approve,admin", "--private-key-out", str(self.key_pem)]
        if schema:
            argv += ["--database-schema", schema]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0, res.stderr[-2000:]
        self.key_id = json.loads(res.stdout.strip().splitlines()[-1])["id"]
        from api.client import CustodyClient, load_private_key

        self.api = CustodyClient(self.url, self.key_id, load_private_key(self.key_pem), timeout_s=30)

    def open_store(self):
        from node.store import open_store

        return open_store(self.database_url, schema=self.schema, migrate=False)

    def stop(self) -> None:
        for p in self.procs:
            p.stop(timeout_s=40)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def world(request):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="node-flow-"))
    failed_before = request.session.testsfailed
    w = World(workdir)
    try:
        yield w
    finally:
        w.stop()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept node flow test dir for inspection: {workdir}")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def node(request, world):
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{world.workdir / 'node-sqlite.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"nodeflow_{uuid.uuid4().hex[:12]}"
        import sqlalchemy as sa

        eng = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        with eng.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        eng.dispose()
    n = Node(world, request.param, url, schema)
    try:
        yield n
    finally:
        n.stop()
        if schema:
            import sqlalchemy as sa

            eng = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
            with eng.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            eng.dispose()


def _events(out: pathlib.Path, event_type: str, **match) -> list[dict]:
    return [e for e in received(out) if e.get("verified") and e["event"]["type"] == event_type
            and all(e["event"]["data"].get(k) == v for k, v in match.items())]


def _book_house_float(node: Node, amount: int) -> None:
    """Operator set-up (see the module docstring): the faucet pays the hot wallet's own
    address; the ledger books it hot wallet <- fee revenue (the house's money)."""
    from node.customers import CODE_DEPOSIT, Customers
    from node.ledger import AccountKind, Ledger, TransferCreate, TransferResult
    from node.store import open_store
    from node.wallets import Wallets
    from chains.keys import Bip32VaultKeys

    world = node.world
    keys = Bip32VaultKeys(world.vault.public_key, world.vault.chain_code)
    hot_address = btx.p2wpkh_address(keys.child_public_key((2, 0)), "regtest")
    txid = world.faucet.pays(hot_address, amount)
    store = node.open_store()
    try:
        ledger = Ledger(store)
        house = Customers(ledger).system_account("BTC", AccountKind.FEE_REVENUE, actor="operator:test")
        hot = [w for w in Wallets(ledger).wallets(vault_id="hot", asset="BTC") if w.kind == "hot"][0].account_id
        [r] = ledger.create_transfers([TransferCreate(f"float:{txid[:40]}", hot, house, amount, "BTC", CODE_DEPOSIT)],
                                      actor="operator:test")
        assert r is TransferResult.ok, r
    finally:
        store.dispose()


def _set_kyc(node: Node, sub: str) -> None:
    """Compliance staff's step (no API resource sets a KYC tier)."""
    from node.ledger import Ledger
    from node.store import open_store
    from node.withdrawals import Withdrawals

    store = node.open_store()
    try:
        Withdrawals(Ledger(store), {}).set_profile(sub, "standard", actor="staff:compliance")
    finally:
        store.dispose()


def test_deposit_and_withdrawal_through_http_only(node):
    world, api = node.world, node.api
    # The receiver: an endpoint registered through the API; its secret goes to the receiver only.
    secret_file = node.workdir / "webhook-secret"
    secret_file.write_text("not-yet")
    receiver, hook_url, out = start_receiver(node.workdir / "receiver", secret_file)
    node.procs.append(receiver)
    ep = api.register_webhook(hook_url, ["deposit.*", "withdrawal.*", "approval.*"])
    secret_file.write_text(ep["secret"])

    api.create_customer("acme", "Acme")
    sub = api.create_sub_account("acme", "main")["id"]
    _set_kyc(node, sub)
    _book_house_float(node, BTC)

    # Deposit: an address issued through the API, paid on regtest, credited, announced.
    address = api.issue_deposit_address(sub, "BTC")
    assert address["chain"] == "bitcoin" and address["address"].startswith("bcrt1"), address
    assert [a["address"] for a in api.deposit_addresses(sub)] == [address["address"]]
    deposit_txid = world.faucet.pays(address["address"], BTC // 2)
    wait_until(lambda: _events(out, "deposit.credited", txid=deposit_txid), 90, "deposit.credited received and verified")
    [dep] = api.deposits(sub)
    assert (dep["status"], dep["amount"], dep["txid"]) == ("credited", str(BTC // 2), deposit_txid), dep
    assert api.balances(sub)["data"] == [{"asset": "BTC", "posted": str(BTC // 2), "pending_out": "0", "pending_in": "0",
                                          "available": str(BTC // 2)}]

    # Withdrawal above the auto-approval band: approvals over HTTP, then the cluster signs.
    destination = btx.p2wpkh_address(PlainTestSigner("node-flow-outside-destination").vault_keys().child_public_key((7, 1)),
                                      "regtest")
    # The destination is whitelisted with `custody whitelist` (a real process, through the API).
    cli_env = {**os.environ, "PYTHONPATH": str(ROOT), "CUSTODY_API_URL": node.url, "CUSTODY_API_KEY_ID": node.key_id,
               "CUSTODY_API_PRIVATE_KEY": str(node.key_pem)}
    res = subprocess.run([sys.executable, "-m", "api.cli", "whitelist", "add", sub, "BTC", destination], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env=cli_env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["usable_after"] == json.loads(res.stdout)["added_at"], "no time-lock in this policy"
    assert [e["address"] for e in api.whitelist(sub)] == [destination.lower()]
    amount = 3 * BTC // 10
    w = api.create_withdrawal(sub, "acme-wd-1", "BTC", destination, amount, idempotency_key="idem-wd-1")
    assert w["status"] == "submitted", w
    # An operator's retry with `custody withdrawals create` (same external_id): the same withdrawal.
    res = subprocess.run([sys.executable, "-m", "api.cli", "withdrawals", "create", sub, "BTC", destination, str(amount),
                          "--external-id", "acme-wd-1"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=cli_env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["id"] == w["id"], "external_id retry"
    wait_until(lambda: _events(out, "approval.requested", withdrawal_id=w["id"]), 60, "approval.requested received")
    [pending] = api.pending_approvals()
    assert pending["withdrawal"]["id"] == w["id"]
    # approver-1 signs the bytes the list shows; approver-2 uses `custody approve` (a real
    # process, through the API: it re-canonicalises the intent itself before signing).
    signature = world.approver_keys["approver-1"].sign(pending["intent_canonical"].encode()).signature.hex()
    assert api.approve(w["id"], "approver-1", signature)["withdrawal"]["sub_status"] == "awaiting_approvals: 1 of 2"
    res = subprocess.run([sys.executable, "-m", "api.cli", "approve", "--withdrawal", w["id"], "--approver-id", "approver-2",
                          "--key-file", world.cluster.info["approvers"]["approver-2"]], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=cli_env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["status"] == "queued", res.stdout

    def mined_and_completed():
        cur = api.withdrawal(w["id"])
        if cur["status"] == "confirming":
            world.btcd.generate(1)
        assert cur["status"] not in ("failed", "rejected", "blocked", "cancelled"), cur
        return cur["status"] == "completed"

    wait_until(mined_and_completed, 240, f"withdrawal {w['id']} completed")
    done = api.withdrawal(w["id"])
    assert done["txid"] and int(done["fee_paid"]) > 0, done
    assert [(a["approver_id"], a["decision"]) for a in done["approvals"]] == [("approver-1", "approve"), ("approver-2", "approve")]
    # On chain: exactly one output paying the destination, of the amount.
    tx = world.btcd.call("getrawtransaction", done["txid"], 1)
    paid = [o for o in tx["vout"] if o["scriptPubKey"].get("address") == destination
            or destination in (o["scriptPubKey"].get("addresses") or [])]
    assert len(paid) == 1 and round(paid[0]["value"] * BTC) == amount, paid  # btcd reports BTC; test-side only
    # The customer's balance: the deposit less the withdrawal (the network fee is the house's).
    [b] = api.balances(sub)["data"]
    assert (b["posted"], b["pending_out"], b["available"]) == (str(BTC // 2 - amount), "0", str(BTC // 2 - amount)), b
    res = subprocess.run([sys.executable, "-m", "api.cli", "withdrawals", "get", "--external-id", "acme-wd-1"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env=cli_env)
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "completed", res.stdout + res.stderr[-2000:]
    wait_until(lambda: _events(out, "withdrawal.completed", id=w["id"], txid=done["txid"]), 60,
               "withdrawal.completed received and verified")
    seen = [e["event"]["type"] for e in received(out) if e.get("verified") and e["event"]["data"].get("id", e["event"]["data"].get("withdrawal_id")) == w["id"]]
    for t in ("withdrawal.submitted", "withdrawal.pending_approval", "approval.requested", "approval.approved", "withdrawal.queued",
              "withdrawal.pending_signature", "withdrawal.broadcasting", "withdrawal.confirming", "withdrawal.completed"):
        assert t in seen, f"{t} not received: {seen}"
    assert all(e.get("verified") for e in received(out)), "every delivery carried a valid signature"


def test_the_node_stops_cleanly_on_sigterm(node):
    """Last for each node: SIGTERM stops the API and every worker within the deadline, exit 0."""
    node.node.popen.send_signal(15)
    code = node.node.popen.wait(timeout=60)
    log = node.node.stderr_path.read_text()
    assert code == 0, f"node exited {code}: {log[-2000:]}"
    stopped = {line.split("worker=")[1].split()[0] for line in log.splitlines() if "worker_stopped" in line}
    assert stopped == {"scan", "pipeline", "sweep"}, f"workers stopped: {stopped}"
    assert "node_stopped" in log and "worker_did_not_stop" not in log
