"""The snapshot job in the node and the reserves API, end to end with real processes: three
`custody signer` peers (2-of-3 over gRPC + mTLS), btcd, Anvil, the node's store on SQLite, the API
server (`custody api serve`), and `custody reserves snapshot --config` as the operator runs it.

The story: two API clients each create a customer through the API; the customers' deposits
arrive on chain (BTC on btcd, ETH on Anvil) at our hot vault's deposit addresses; the job
freezes the ledger with the heights our adapters scanned to, reads the funded addresses at
those heights, has the cluster sign the reserves message (one batched request per chain), signs the header with the sealed snapshot key, stores
it and announces it to the client with a webhook endpoint. Each client then fetches its own
customer's proof over HTTP and custody-verify accepts it; another client's customer is a 404.
The verifier page served by the node, saved to disk, verifies offline in Chromium.

Shortcuts, each said here: fixture pre-params in the signers (never in production); the faucet
paying our deposit addresses is an outside wallet with a plain test key. Deposit addresses are
issued and deposits credited by node.deposits, called by the test where the node's worker loop
would call it.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.client import ApiError, CustodyClient
from chains.bitcoin import tx as btx
from chains.bitcoin.adapter import BitcoinAdapter
from chains.bitcoin.rpc import BitcoinRpc
from chains.keys import Bip32VaultKeys
from chains.state import ChainState, make_engine
from node import apikeys
from node.deposits import Deposits
from node.ledger import Ledger, LedgerKind
from node.log import Secret
from node.ports import Payment, SigningRefused, WithdrawalIntent
from node.store import open_store
from node.wallets import Wallets
from node.withdrawals import Withdrawals
from tests.support import nodes
from tests.support.cluster import LocalCluster
from tests.support.procs import Proc, free_port
from tests.support.secrets_key import secrets_key_file
from tests.support.test_signer import PlainTestSigner

pytestmark = pytest.mark.functional
VENV_BIN = pathlib.Path(sys.executable).parent
DEPOSITS = {"alice": 70_000_000, "bob": 20_000_000}  # BTC, satoshi
ETH_DEPOSIT = ("alice", 3 * 10**18)  # wei


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "custody"), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def verify(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "custody-verify"), *map(str, args)], capture_output=True, text=True, timeout=120)


class Client:
    """An API client (its own client id) with one admin + read key; the private key stays here."""

    def __init__(self, engine, url: str, name: str):
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key = apikeys.create_api_key(engine, client_id=None, name=name, scopes=["admin", "read"], public_key=raw)
        self.http = CustodyClient(url, self.key.id, private, timeout_s=30)


class World:
    def __init__(self, d: pathlib.Path):
        self.dir = d
        faucet_signer = PlainTestSigner("por-node-faucet-outside-wallet")
        faucet_address = btx.p2wpkh_address(faucet_signer.vault_keys().child_public_key((1, 0)), "regtest")
        self.btcd = nodes.Btcd(d / "btcd", faucet_address).start()
        self.anvil = nodes.Anvil(d / "anvil").start()
        self.procs = [self.btcd, self.anvil]
        self.btcd.generate(110)
        rpc = BitcoinRpc(self.btcd.url, nodes.BTCD_RPC_USER, Secret(nodes.BTCD_RPC_PASSWORD))
        self.faucet_signer = faucet_signer
        self.faucet = BitcoinAdapter(rpc, ChainState(make_engine(f"sqlite:///{d / 'faucet.db'}"), "bitcoin:regtest"),
                                     "regtest", confirmations=1, fee_rate_fallback_sat_vb=2, start_height=0)
        self.faucet.register_vault("faucet", faucet_signer.vault_keys())
        self.faucet.address("faucet", (1, 0))
        self.cluster = LocalCluster(d / "cluster", 3, 1, round_timeout_ms=20_000)
        self.cluster.start_all()
        self.procs.append(self.cluster)
        self.vault = self._keygen()
        # The node's store and ledger, on SQLite.
        self.db_url = f"sqlite:///{d / 'node.db'}"
        self.store = open_store(self.db_url)
        self.ledger = Ledger(self.store)
        Withdrawals(self.ledger, {"bitcoin": "regtest", "ethereum": str(nodes.Anvil.CHAIN_ID)}).register_vault(
            self.vault, "hot", actor="test:setup")
        for asset, scale in (("BTC", 8), ("ETH", 18)):
            self.ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor="test:setup")
            Wallets(self.ledger).create_wallet(f"hot:{asset}", "hot", asset, "hot", actor="test:setup")
        # Our adapter's state (the snapshot job's World opens the same file).
        self.chain_state_url = f"sqlite:///{d / 'chains.db'}"
        self.start_height = self.btcd.height()
        self.ours = BitcoinAdapter(rpc, ChainState(make_engine(self.chain_state_url), "bitcoin:regtest"), "regtest",
                                   confirmations=1, fee_rate_fallback_sat_vb=2, start_height=self.start_height)
        self.ours.register_vault("hot", Bip32VaultKeys(self.vault.public_key, self.vault.chain_code))
        from chains.ethereum.adapter import EthereumAdapter

        self.eth_start_height = self.anvil.height()
        self.eth = EthereumAdapter.connect(self.anvil.url, ChainState(make_engine(self.chain_state_url), f"ethereum:{nodes.Anvil.CHAIN_ID}"),
                                           nodes.Anvil.CHAIN_ID, confirmations={"ETH": 1}, max_fee_per_gas_fallback=50 * 10**9,
                                           max_priority_fee_per_gas_fallback=2 * 10**9, start_height=self.eth_start_height)
        self.eth.register_vault("hot", Bip32VaultKeys(self.vault.public_key, self.vault.chain_code))
        # Deposits are credited by the node's own crediting (node.deposits), from what the
        # adapters scanned.
        self.deposits = Deposits(self.ledger, {"bitcoin": self.ours, "ethereum": self.eth}, vault_id="hot")
        self.store_dir = d / "reserves"
        self.api_url = self._start_api()
        self.config = self._write_config()

    def _keygen(self):
        try:
            return self.cluster.client().keygen("hot", tuple(self.cluster.names), 1)
        except SigningRefused as exc:  # a ceremony may time out on this loaded 2-core machine: once more
            print(f"keygen failed once ({exc}); retrying")
            return self.cluster.client().keygen("hot", tuple(self.cluster.names), 1)

    def _start_api(self) -> str:
        port = free_port()
        env = {"CUSTODY_API_DATABASE_URL": self.db_url, "CUSTODY_API_ENVIRONMENT": "development",
               "CUSTODY_API_SECRETS_KEY_FILE": str(secrets_key_file(self.dir / "api")),
               "CUSTODY_API_WEBHOOK_ALLOW_INSECURE_URLS": "true", "CUSTODY_API_WEBHOOK_WORKER": "false",
               "CUSTODY_RESERVES_STORE_DIR": str(self.store_dir)}
        proc = Proc("api", [VENV_BIN / "custody", "api", "serve", "--port", port], self.dir / "api", env=env).start()
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        proc.wait_ready(lambda: httpx.get(f"{url}/v1/ready", timeout=2).status_code == 200, 60, "the API answers /v1/ready")
        return url

    def _write_config(self) -> pathlib.Path:
        pw = self.dir / "btc-rpc-password"
        pw.write_text(nodes.BTCD_RPC_PASSWORD)
        passphrase = self.dir / "por-key.passphrase"
        passphrase.write_text("correct horse battery staple, for tests only\n")
        path = self.dir / "node.toml"
        path.write_text(f"""environment = "test"
database_url = "{self.db_url}"
chain_state_url = "{self.chain_state_url}"
cluster_file = "{self.cluster.dir / 'cluster.json'}"
[confirmations]
bitcoin = 1
[bitcoin]
network = "regtest"
rpc_url = "{self.btcd.url}"
rpc_user = "{nodes.BTCD_RPC_USER}"
rpc_password_file = "{pw}"
deposit_confirmations = 1
start_height = {self.start_height}
[ethereum]
chain_id = {nodes.Anvil.CHAIN_ID}
rpc_url = "{self.anvil.url}"
deposit_confirmations = 1
start_height = {self.eth_start_height}
[reserves]
store_dir = "{self.store_dir}"
node_id = "node-1"
snapshot_key_file = "{self.dir / 'por-key.sealed'}"
passphrase_file = "{passphrase}"
interval_s = 3600
assets = [{{ code = "BTC", chain = "bitcoin", decimals = 8 }}, {{ code = "ETH", chain = "ethereum", decimals = 18 }}]
[api]
secrets_key_file = "{secrets_key_file(self.dir / 'api')}"
""")
        return path

    def deposit(self, customer_id: str, client_id: str, amount: int) -> str:
        """The customer's client asks for a deposit address; the faucet pays it; once mined our
        adapter scans it and the node credits it. Returns the address."""
        address = self.deposits.issue_address(f"{customer_id}.main", "BTC", client_id=client_id, actor=f"api:{client_id}").address
        self.faucet.scan()
        it = WithdrawalIntent(f"faucet-{customer_id}", "faucet", "bitcoin", "regtest", "BTC", (Payment(address, amount),), 100_000)
        utx = self.faucet.build_withdrawal(it)
        self.faucet.broadcast(self.faucet.attach_signatures(utx, self.faucet_signer.sign(self.faucet.digests(utx, it)), it))
        self.btcd.generate(1)
        self.ours.scan()
        report = self.deposits.sync(self.ours)
        assert report.credited == 1, report
        return address

    def deposit_eth(self, customer_id: str, client_id: str, amount: int) -> str:
        """Anvil's dev account (an outside payer) sends ETH to the customer's deposit address."""
        from web3 import Web3

        address = self.deposits.issue_address(f"{customer_id}.main", "ETH", client_id=client_id, actor=f"api:{client_id}").address
        w3 = Web3(Web3.HTTPProvider(self.anvil.url, request_kwargs={"timeout": 10}))
        txh = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": amount})
        w3.eth.wait_for_transaction_receipt(txh, timeout=10)
        self.eth.scan()
        report = self.deposits.sync(self.eth)
        assert report.credited == 1, report
        return address

    def stop(self):
        for p in reversed(self.procs):
            p.stop_all() if isinstance(p, LocalCluster) else p.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("por-node"))
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def clients(world):
    a, b = Client(world.store.engine, world.api_url, "exchange-a"), Client(world.store.engine, world.api_url, "exchange-b")
    a.http.post("/v1/customers", {"id": "alice", "name": "Alice", "kind": "individual"})
    b.http.post("/v1/customers", {"id": "bob", "name": "Bob", "kind": "individual"})
    a.http.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook", "event_types": ["reserves.*"]})
    world.addresses = {"alice": world.deposit("alice", a.key.client_id, DEPOSITS["alice"]),
                       "bob": world.deposit("bob", b.key.client_id, DEPOSITS["bob"])}
    world.eth_address = world.deposit_eth(ETH_DEPOSIT[0], a.key.client_id, ETH_DEPOSIT[1])
    yield a, b
    a.http.close()
    b.http.close()


@pytest.fixture(scope="module")
def snapshot_taken(world, clients):
    r = cli("reserves", "snapshot", "--config", world.config)
    assert r.returncode == 2 and "snapshot_key_file" in r.stderr, (r.returncode, r.stderr)  # no key: no snapshot
    r = cli("reserves", "init-key", "--config", world.config)
    assert r.returncode == 0, r.stderr
    public_key = json.loads(r.stdout)["public_key"]
    assert cli("reserves", "init-key", "--config", world.config).returncode == 2  # never replaced silently
    sealed = (world.dir / "por-key.sealed").read_bytes()
    assert sealed.startswith(b"CNSEAL") and (world.dir / "por-key.sealed").stat().st_mode & 0o077 == 0  # sealed, owner-only
    ceremonies = lambda: sum(world.cluster.metric(n, "custody_signer_ceremonies_total", protocol="sign")  # noqa: E731
                             for n in world.cluster.names)
    before = ceremonies()
    r = cli("reserves", "snapshot", "--config", world.config)
    assert r.returncode == 0, r.stderr
    assert ceremonies() - before == 2, "one batched reserves request per chain (both BTC addresses in one)"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["seq"] == 1 and out["public_key"] == public_key and out["addresses"] == 3, out
    return out


def events(world, event_type="reserves.snapshot"):
    from node.store.api_models import webhook_events

    with world.store.engine.connect() as conn:
        return conn.execute(sa.select(webhook_events.c.client_id, webhook_events.c.payload)
                            .where(webhook_events.c.type == event_type)).all()


def test_the_job_signs_stores_and_announces_a_snapshot(world, clients, snapshot_taken):
    a, b = clients
    sid = snapshot_taken["snapshot_id"]
    header = a.http.get("/v1/reserves/snapshots/latest/header")
    h = header["header"]
    assert h["snapshot_id"] == sid and h["prev"] is None
    assert h["root"]["sums"] == [str(sum(DEPOSITS.values())), str(ETH_DEPOSIT[1])]
    assert h["reserves"] == [{"asset": "BTC", "amount": "90000000", "addresses": 2},
                             {"asset": "ETH", "amount": str(ETH_DEPOSIT[1]), "addresses": 1}]
    assert [(c["chain"], c["height"]) for c in h["chains"]] == [("bitcoin", world.btcd.height()), ("ethereum", world.anvil.height())]
    assets = a.http.get(f"/v1/reserves/snapshots/{sid}/assets")
    expected = {world.addresses[c]: amount for c, amount in DEPOSITS.items()}
    expected[world.eth_address] = ETH_DEPOSIT[1]
    assert {e["address"]: int(e["balance"]) for e in assets["addresses"]} == expected
    # Announced once, to the one client with an endpoint; a second run (not due) adds nothing.
    got = events(world)
    assert [c for c, _ in got] == [a.key.client_id], got
    data = json.loads(got[0][1])["data"]
    assert data["snapshot_id"] == sid and data["public_key"] == snapshot_taken["public_key"]
    r = cli("reserves", "snapshot", "--config", world.config)
    assert r.returncode == 0 and json.loads(r.stdout) == {"snapshot": "not_due"}, r.stderr
    assert len(events(world)) == 1
    listed = a.http.get("/v1/reserves/snapshots", {"limit": 10})
    assert [s["snapshot_id"] for s in listed["data"]] == [sid] and listed["next_cursor"] is None


def test_each_client_fetches_its_own_customer_proof_and_it_verifies(world, clients, snapshot_taken, tmp_path):
    a, b = clients
    sid, key = snapshot_taken["snapshot_id"], snapshot_taken["public_key"]
    for client, customer in ((a, "alice"), (b, "bob")):
        files = {
            "proof": client.http.get(f"/v1/reserves/snapshots/{sid}/proofs/{customer}"),
            "compact": client.http.get(f"/v1/reserves/snapshots/{sid}/proofs/{customer}", {"format": "por-mst/1-compact"}),
            "header": client.http.get(f"/v1/reserves/snapshots/{sid}/header"),
            "assets": client.http.get(f"/v1/reserves/snapshots/{sid}/assets"),
        }
        assert (files["proof"]["format"], files["compact"]["format"]) == ("por-mst/1", "por-mst/1-compact")
        paths = {}
        for name, doc in files.items():
            paths[name] = tmp_path / f"{customer}-{name}.json"
            paths[name].write_text(json.dumps(doc))
        for proof in (paths["proof"], paths["compact"]):
            r = verify("proof", proof, "--signed-header", paths["header"], "--public-key", key, "--account-id", customer)
            assert r.returncode == 0, r.stderr
            assert f"BTC: your balance {DEPOSITS[customer]} is counted in total liabilities 90000000" in r.stdout, r.stdout
        r = verify("assets", paths["assets"], "--signed-header", paths["header"], "--public-key", key,
                   "--ethereum-rpc", world.anvil.url)
        assert r.returncode == 0 and "BTC: reserves 90000000 / liabilities 90000000 = 1.0000" in r.stdout, r.stdout
        assert "valid: 1 ETH balances re-read from the node at height" in r.stdout, r.stdout
        assert f"ETH: reserves {ETH_DEPOSIT[1]} / liabilities {ETH_DEPOSIT[1]} = 1.0000" in r.stdout, r.stdout


@pytest.mark.parametrize("who, customer", [("a", "bob"), ("b", "alice"), ("a", "nobody")])
def test_another_clients_customer_is_not_found(world, clients, snapshot_taken, who, customer):
    client = dict(zip("ab", clients))[who]
    with pytest.raises(ApiError) as e:
        client.http.get(f"/v1/reserves/snapshots/{snapshot_taken['snapshot_id']}/proofs/{customer}")
    assert (e.value.status, e.value.problem["code"]) == (404, "proof_not_found"), e.value.problem


def test_reserves_routes_need_a_signed_request(world, snapshot_taken):
    r = httpx.get(f"{world.api_url}/v1/reserves/snapshots/latest/header", timeout=10)
    assert r.status_code == 401, r.text
    r = httpx.get(f"{world.api_url}/v1/reserves/snapshots/{snapshot_taken['snapshot_id']}/proofs/alice", timeout=10)
    assert r.status_code == 401, r.text


def test_the_served_verifier_page_works_saved_and_offline(world, clients, snapshot_taken, browser, tmp_path):
    a, _ = clients
    r = httpx.get(f"{world.api_url}/reserves/verify.html", timeout=10)  # public: static code, no data
    assert r.status_code == 200 and "script-src 'sha256-" in r.headers["content-security-policy"]
    saved = tmp_path / "verify.html"
    saved.write_bytes(r.content)  # "Save page as": one file, nothing else
    sid = snapshot_taken["snapshot_id"]
    files = {"proof": f"/v1/reserves/snapshots/{sid}/proofs/alice", "header": f"/v1/reserves/snapshots/{sid}/header",
             "assets": f"/v1/reserves/snapshots/{sid}/assets"}
    for name, path in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(a.http.get(path)))
    context = browser.new_context(offline=True)
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(saved.as_uri())
        page.wait_for_selector("#ready[data-ready='1']", state="attached", timeout=10_000)
        for name in files:
            page.set_input_files(f"#{name}", [str(tmp_path / f"{name}.json")])
        page.fill("#pubkey", snapshot_taken["public_key"])
        page.click("#verify")
        page.wait_for_selector("#result[data-status='valid'], #result[data-status='invalid']", state="attached", timeout=60_000)
        details = page.inner_text("#details")
        assert page.locator("#result").get_attribute("data-status") == "valid", details
        assert "your balance 70000000 is counted" in details and "BTC: reserves 90000000 / liabilities 90000000" in details
        assert not errors, errors
    finally:
        context.close()


def test_the_node_process_wiring_runs_the_job_and_serves_the_store(world, clients, snapshot_taken):
    """api/node_root.py with the same config: the reserves worker's tick (not due: the snapshot
    of this module is under an hour old) and the API's reader of the same store."""
    from api import node_root

    root = node_root.NodeRoot(node_root.load_config(world.config))
    try:
        assert root.reserves_once() == 0
        assert root.reserves_job.store.latest().snapshot_id == snapshot_taken["snapshot_id"]
        assert root.app.state.reserves_reader.latest().snapshot_id == snapshot_taken["snapshot_id"]
    finally:
        root.stop()
