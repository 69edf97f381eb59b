"""`custody dev up` — what `make run` starts — run as a real process, the way a developer runs
it: btcd (regtest) and Anvil as its children, three signer processes over mTLS, the hot
vault's distributed key generation, the node config, the API with its webhook worker. Then
the dev commands against it (fund-btc, fund-eth, webhook-receiver), bad input refused, a
restart on the same data directory that keeps the cluster, the vault, the key and Anvil's
state (btcd starts a new regtest chain, and says so), and Ctrl-C (SIGTERM) leaving no process
behind.

Shortcut, stated: CUSTODY_DEV_TEST_PREPARAMS points the new cluster at the fixture
pre-parameters (tests/fixtures/preparams), so the keygen does not wait minutes for each
peer to find its own. That makes it a test cluster (`environment = "test"` in each signer's
config, the only place a signer honours fixtures): never in production.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import httpx
import pytest

from api.client import CustodyClient, load_private_key
from tests.support.procs import Proc, free_port, free_ports_at, tail, wait_until

pytestmark = pytest.mark.functional

ROOT = pathlib.Path(__file__).resolve().parents[3]
CUSTODY = pathlib.Path(sys.executable).parent / "custody"
FIXTURE_PREPARAMS = ROOT / "tests" / "fixtures" / "preparams"
UP_DEADLINE_S = 150  # chains + 3 signers + DKG with fixture pre-params, on a busy 2-core machine
BTC_CONFIRMATIONS = 3  # api.dev.DEV_CONFIRMATIONS: what fund-* mines by default


def assert_eq(got, want, what=""):
    assert got == want, f"{what}: expected {want!r}, got {got!r}"


def children_of(pid: int) -> set[int]:
    out = set()
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


class DevUp:
    """One `custody dev up` process on its own data dir and free ports."""

    def __init__(self, workdir: pathlib.Path, data_dir: pathlib.Path, ports: dict[str, int], run: int):
        self.data_dir = data_dir
        self.ports = ports
        self.api_url = f"http://127.0.0.1:{ports['api']}"
        argv = [CUSTODY, "dev", "up", "--data-dir", data_dir, "--port", ports["api"],
                "--signer-base-port", ports["signers"], "--btcd-rpc-port", ports["btcd_rpc"],
                "--btcd-p2p-port", ports["btcd_p2p"], "--anvil-port", ports["anvil"]]
        self.proc = Proc(f"dev-up-{run}", argv, workdir,
                         env={"CUSTODY_DEV_TEST_PREPARAMS": str(FIXTURE_PREPARAMS)})  # fixture pre-params: never in production
        self.children: set[int] = set()

    def start(self) -> "DevUp":
        self.proc.start()
        self.proc.wait_ready(self._api_ready, UP_DEADLINE_S, "the API answers and the banner is printed")
        self.children = children_of(self.proc.pid)
        return self

    def _api_ready(self) -> bool:
        try:
            ok = httpx.get(f"{self.api_url}/v1/health", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and "admin API key" in self.proc.stderr_path.read_text()

    def banner(self, label: str) -> str:
        m = re.search(rf"^\s*{label}\s+(\S+)", self.proc.stderr_path.read_text(), re.MULTILINE)
        assert m, f"no `{label}` line in dev up's output:\n{tail(self.proc.stderr_path)}"
        return m.group(1)

    def client(self) -> CustodyClient:
        return CustodyClient(self.api_url, self.banner("admin API key"), load_private_key(self.banner("private key")))

    def dev(self, *args, env=None) -> subprocess.CompletedProcess:
        return subprocess.run([str(CUSTODY), "dev", *map(str, args), "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})

    def custody(self, *args) -> subprocess.CompletedProcess:
        """Any `custody` client command with the environment lines dev up prints."""
        env = {**os.environ, "CUSTODY_API_URL": self.api_url, "CUSTODY_API_KEY_ID": self.banner("admin API key"),
               "CUSTODY_API_PRIVATE_KEY": self.banner("private key")}
        return subprocess.run([str(CUSTODY), *map(str, args)], capture_output=True, text=True, timeout=60, env=env)

    def call(self, *args) -> subprocess.CompletedProcess:
        """`custody call ...` with the environment lines dev up prints."""
        env = {**os.environ, "CUSTODY_API_URL": self.api_url, "CUSTODY_API_KEY_ID": self.banner("admin API key"),
               "CUSTODY_API_PRIVATE_KEY": self.banner("private key")}
        return subprocess.run([str(CUSTODY), "call", *map(str, args)], capture_output=True, text=True, timeout=60, env=env)

    def btc(self, method: str, *params):
        password = (self.data_dir / "chains" / "btcd-rpc-password").read_text().strip()
        r = httpx.post(f"http://127.0.0.1:{self.ports['btcd_rpc']}",
                       json={"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)},
                       auth=("custody-dev", password), timeout=10, trust_env=False)
        doc = r.json()
        assert not doc.get("error"), doc
        return doc["result"]

    def eth(self, method: str, *params):
        r = httpx.post(f"http://127.0.0.1:{self.ports['anvil']}",
                       json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10,
                       trust_env=False)
        return r.json()["result"]

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C's twin; then every child it started must be gone."""
        self.proc.stop(timeout_s=60)
        wait_until(lambda: not any(alive(p) for p in self.children), 30,
                   f"dev up's children {sorted(self.children)} exited")

    def kill_leftovers(self) -> None:
        """Backstop after a failed test: never leave btcd, Anvil or a signer running."""
        self.proc.kill()
        for p in self.children:
            if alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.fixture(scope="module")
def world(request):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="devup-"))
    failed_before = request.session.testsfailed
    ports = {"api": free_port(), "signers": _signer_base_port(), "btcd_rpc": free_port(), "btcd_p2p": free_port(),
             "anvil": free_port()}
    state = {"workdir": workdir, "data_dir": workdir / "data", "ports": ports, "runs": []}

    def start(run: int) -> DevUp:
        up = DevUp(workdir, state["data_dir"], ports, run)
        state["runs"].append(up)
        return up.start()

    state["start"] = start
    state["up"] = start(1)
    try:
        yield state
    finally:
        for up in state["runs"]:
            up.kill_leftovers()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nkept dev up test dir for inspection: {workdir}")


def _signer_base_port() -> int:
    """A base b with b+1..b+3 and b+101..b+103 free (peers and their metrics)."""
    return free_ports_at((1, 2, 3, 101, 102, 103))


def test_the_api_answers_with_the_printed_admin_key(world):
    up = world["up"]
    with up.client() as c:
        me = c.whoami()
        assert_eq(sorted(me["scopes"]), ["admin", "approve", "deposit", "read", "withdraw"], "the first key's scopes")
        c.create_customer("acme", "Acme Ltd")
        sub = c.create_sub_account("acme", "main")
        assert_eq(c.balances(sub["id"])["data"], [], "a new sub-account's balances")


def test_walkthrough_commands_through_custody_call(world):
    up = world["up"]
    r = up.call("POST", "/v1/customers", '{"id": "globex", "name": "Globex"}', "--idempotency-key", "walk-1")
    assert_eq(r.returncode, 0, f"create a customer (stderr: {r.stderr[-1000:]})")
    r = up.call("POST", "/v1/customers/globex/sub-accounts", '{"name": "main"}')
    assert_eq(r.returncode, 0, f"create a sub-account (stderr: {r.stderr[-1000:]})")
    sub = json.loads(r.stdout)["id"]
    r = up.call("GET", f"/v1/sub-accounts/{sub}/balances")
    assert_eq((r.returncode, json.loads(r.stdout)["data"]), (0, []), "balances of the new sub-account")
    # Refusals: a problem document on stderr, exit 1; bad arguments, exit 2 and nothing sent.
    r = up.call("GET", "/v1/sub-accounts/nobody.main/balances")
    assert_eq((r.returncode, json.loads(r.stderr)["code"]), (1, "sub_account_not_found"), "unknown sub-account")
    r = up.call("POST", "/v1/customers", "{not json")
    assert_eq(r.returncode, 2, "a body that is not JSON")


def test_node_config_names_the_running_chains_and_cluster(world):
    from api.withdrawals_root import load_config

    up = world["up"]
    cfg = load_config(up.data_dir / "node.toml")
    assert_eq(cfg["bitcoin"]["rpc_url"], f"http://127.0.0.1:{up.ports['btcd_rpc']}", "bitcoin rpc_url")
    assert_eq(cfg["ethereum"]["rpc_url"], f"http://127.0.0.1:{up.ports['anvil']}", "ethereum rpc_url")
    assert_eq(json.loads(pathlib.Path(cfg["cluster_file"]).read_text())["threshold"], 1, "cluster threshold")
    # The node's own composition root opens it against the live chains: reconcile exits 0.
    r = subprocess.run([str(CUSTODY), "withdrawals", "reconcile", "--config", str(up.data_dir / "node.toml")],
                       capture_output=True, text=True, timeout=120)
    assert_eq(r.returncode, 0, f"reconcile on the dev config (stderr: {r.stderr[-2000:]})")


def test_fund_btc_pays_the_hot_vault_address_and_mines_to_depth(world):
    up = world["up"]
    address = up.banner("deposit 0/0")
    assert address.startswith("bcrt1"), address
    r = up.dev("fund-btc", address, 150_000_000)
    assert_eq(r.returncode, 0, f"fund-btc (stderr: {r.stderr[-2000:]})")
    out = json.loads(r.stdout)
    assert_eq((out["address"], out["amount"], out["blocks_mined"]), (address, "150000000", BTC_CONFIRMATIONS), "fund-btc")
    tx = up.btc("getrawtransaction", out["txid"], 1)
    assert_eq(tx["confirmations"], BTC_CONFIRMATIONS, "confirmations of the faucet payment")
    paid = [o for o in tx["vout"] if address in (o["scriptPubKey"].get("addresses") or [o["scriptPubKey"].get("address")])]
    assert_eq([round(o["value"] * 100_000_000) for o in paid], [150_000_000], "sats paid to the address")  # btcd reports BTC


def test_fund_eth_pays_and_mines(world):
    up = world["up"]
    to = "0x000000000000000000000000000000000000dEaD"
    before = int(up.eth("eth_getBalance", to, "latest"), 16)
    r = up.dev("fund-eth", to, 10**18)
    assert_eq(r.returncode, 0, f"fund-eth (stderr: {r.stderr[-2000:]})")
    assert_eq(int(up.eth("eth_getBalance", to, "latest"), 16) - before, 10**18, "wei received")


@pytest.mark.parametrize(
    "args, code",
    [
        (("fund-btc", "bcrt1qtzs77l09ydrhya2qxju9gjej4kmpcdy9acwyhc", 0), "amount_out_of_range"),
        (("fund-btc", "not-an-address", 100_000), "faucet_payment_refused"),
        (("fund-btc", "bcrt1qtzs77l09ydrhya2qxju9gjej4kmpcdy9acwyhc", 100_000, "--blocks", 100_000), "blocks_out_of_range"),
        (("fund-eth", "0x1234", 1), "address_invalid"),
        (("mine", "bitcoin", 0), "blocks_out_of_range"),
        (("kyc", "nobody.main"), "sub_account_not_found"),
        (("kyc", "acme.main", "--tier", "gold"), "kyc_tier_unknown"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(world, args, code):
    up = world["up"]
    height = up.btc("getblockcount")
    r = up.dev(*args)
    assert_eq(r.returncode, 1, f"exit status of {args}")
    assert code in r.stderr, f"{code} not in: {r.stderr[-1000:]}"
    assert_eq(up.btc("getblockcount"), height, "btcd height after a refused command")


def test_fund_without_a_running_system_says_so(tmp_path):
    r = subprocess.run([str(CUSTODY), "dev", "fund-btc", "bcrt1qtzs77l09ydrhya2qxju9gjej4kmpcdy9acwyhc", "1000",
                        "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert_eq(r.returncode, 1, "exit status")
    assert "dev_chains_not_started" in r.stderr, r.stderr


def test_webhook_receiver_deposit_and_withdrawals_through_the_node(world):
    up = world["up"]
    port = free_port()
    with up.client() as c:
        endpoint = c.register_webhook(f"http://127.0.0.1:{port}/hooks", ["*"])
        receiver = Proc("webhook-receiver", [CUSTODY, "dev", "webhook-receiver", "--port", port], world["workdir"],
                        env={"CUSTODY_WEBHOOK_SECRET": endpoint["secret"]}).start()
        try:
            receiver.wait_ready(lambda: "listening" in receiver.stderr_path.read_text(), 30, "listening")
            ping = c.ping_webhook(endpoint["id"])

            def printed():
                lines = [json.loads(x) for x in receiver.stdout_path.read_text().splitlines() if x.strip()]
                return [x for x in lines if x["event_id"] == ping["event_id"]]

            got = wait_until(printed, 60, "the receiver printed the ping")
            assert_eq([(x["verified"], x["duplicate"]) for x in got], [(True, False)], "the ping, verified once")

            # The walkthrough's deposit: an address for acme.main, the faucet pays it, dev up's
            # chain workers credit it at depth, the receiver prints deposit.credited.
            r = up.call("POST", "/v1/sub-accounts/acme.main/deposit-addresses", '{"asset": "BTC"}')
            assert_eq(r.returncode, 0, f"a deposit address through the API (stderr: {r.stderr[-2000:]})")
            address = json.loads(r.stdout)["address"]
            r = up.dev("fund-btc", address, 40_000_000)
            assert_eq(r.returncode, 0, f"fund-btc (stderr: {r.stderr[-2000:]})")

            def credited():
                rows = {b["asset"]: b for b in c.balances("acme.main")["data"]}
                return rows.get("BTC", {}).get("posted") == "40000000" and rows["BTC"]

            wait_until(credited, 60, "acme.main credited 40000000 sats")

            def credited_event():
                lines = [json.loads(x) for x in receiver.stdout_path.read_text().splitlines() if x.strip()]
                return [x for x in lines if x["type"] == "deposit.credited" and x["verified"]]

            got = wait_until(credited_event, 60, "the receiver printed deposit.credited")
            assert_eq(len(got), 1, "deposit.credited deliveries (de-duplicated)")

            # The same on Anvil: an ETH deposit address, paid by Anvil's dev account.
            r = up.call("POST", "/v1/sub-accounts/acme.main/deposit-addresses", '{"asset": "ETH"}')
            assert_eq(r.returncode, 0, f"an ETH deposit address (stderr: {r.stderr[-2000:]})")
            r = up.dev("fund-eth", json.loads(r.stdout)["address"], 10**17)
            assert_eq(r.returncode, 0, f"fund-eth (stderr: {r.stderr[-2000:]})")
            wait_until(lambda: {b["asset"]: b["posted"] for b in c.balances("acme.main")["data"]}.get("ETH") == str(10**17),
                       60, "acme.main credited 10**17 wei")

            # The walkthrough's withdrawals, through the node's API and the dev policy: a KYC
            # tier (compliance's step), a whitelisted destination usable after the time-lock,
            # one withdrawal inside the auto-approval band, one above it approved by a dev
            # approver with `custody approve`; the cluster signs, blocks are mined, the receiver
            # prints withdrawal.completed, verified.
            r = up.dev("kyc", "acme.main")
            assert_eq(r.returncode, 0, f"kyc (stderr: {r.stderr[-2000:]})")
            entry = c.whitelist_add("acme.main", "BTC", OUTSIDE_BTC)
            usable_after = datetime.datetime.fromisoformat(entry["usable_after"].replace("Z", "+00:00"))
            assert usable_after > datetime.datetime.fromisoformat(entry["added_at"].replace("Z", "+00:00")), entry
            wait_until(lambda: datetime.datetime.now(datetime.timezone.utc) > usable_after, 30, "the whitelist time-lock")
            auto = _withdraw(up, "wd-auto", 5_000_000)
            assert_eq(auto["status"], "submitted", "a new withdrawal")
            _mine_until_completed(up, c, auto["id"])
            big = _withdraw(up, "wd-approved", 20_000_000)
            wait_until(lambda: c.withdrawal(big["id"])["status"] == "pending_approval", 60, "the withdrawal awaits approval")
            r = up.custody("approve", "--withdrawal", big["id"], "--approver-id", "approver-1", "--key-file",
                           up.data_dir / "cluster" / "approvers" / "approver-1.key")
            assert_eq(r.returncode, 0, f"custody approve (stderr: {r.stderr[-2000:]})")
            done = _mine_until_completed(up, c, big["id"])
            assert_eq([(a["approver_id"], a["decision"]) for a in done["approvals"]], [("approver-1", "approve")], "approvals")
            assert_eq({b["asset"]: b["posted"] for b in c.balances("acme.main")["data"]}["BTC"], str(40_000_000 - 25_000_000),
                      "acme.main's BTC after both withdrawals (the network fee is the house's)")

            def completed_events():
                lines = [json.loads(x) for x in receiver.stdout_path.read_text().splitlines() if x.strip()]
                return {x["body"]["data"]["id"] for x in lines if x["type"] == "withdrawal.completed" and x["verified"]}

            wait_until(lambda: completed_events() >= {auto["id"], big["id"]}, 60, "the receiver printed both withdrawal.completed")

            # A forged delivery is refused and printed as such.
            body = b'{"type": "withdrawal.completed"}'
            r = httpx.post(f"http://127.0.0.1:{port}/hooks", content=body, trust_env=False, timeout=10,
                           headers={"Custody-Event-Id": "evt_forged", "Custody-Signature": "t=1,v1=00"})
            assert_eq(r.status_code, 400, "a forged delivery")
        finally:
            receiver.stop()


OUTSIDE_BTC = "bcrt1qtzs77l09ydrhya2qxju9gjej4kmpcdy9acwyhc"  # a regtest address of nobody here


def _withdraw(up: DevUp, external_id: str, sats: int) -> dict:
    body = json.dumps({"external_id": external_id, "sub_account_id": "acme.main", "asset": "BTC",
                       "destination": OUTSIDE_BTC, "amount": str(sats)})
    r = up.call("POST", "/v1/withdrawals", body, "--idempotency-key", external_id)
    assert_eq(r.returncode, 0, f"POST /v1/withdrawals (stderr: {r.stderr[-2000:]})")
    return json.loads(r.stdout)


def _mine_until_completed(up: DevUp, c: CustodyClient, withdrawal_id: str) -> dict:
    def completed():
        cur = c.withdrawal(withdrawal_id)
        assert cur["status"] not in ("failed", "rejected", "blocked", "cancelled", "pending_screening"), cur
        if cur["status"] == "confirming":
            r = up.dev("mine", "bitcoin", 1)
            assert_eq(r.returncode, 0, f"mine (stderr: {r.stderr[-1000:]})")
        return cur if cur["status"] == "completed" else None

    done = wait_until(completed, 90, f"withdrawal {withdrawal_id} completed")
    tx = up.btc("getrawtransaction", done["txid"], 1)
    paid = [o for o in tx["vout"] if OUTSIDE_BTC in (o["scriptPubKey"].get("addresses") or [o["scriptPubKey"].get("address")])]
    assert_eq([round(o["value"] * 100_000_000) for o in paid], [int(done["amount"])], "sats paid on chain")  # btcd reports BTC
    assert int(done["fee_paid"]) > 0, done
    return done


def test_a_reserves_snapshot_counts_the_customer_and_custody_verify_accepts_it(world, tmp_path):
    """dev up's node takes proof-of-reserves snapshots (a minute apart): one taken after the
    walkthrough's deposit and withdrawals counts acme's BTC exactly as the ledger has it, and
    custody-verify — pinned to the key the banner printed — accepts acme's own proof served by
    the API, the signed header, and the assets file with its balances re-read from btcd."""
    up = world["up"]
    key = up.banner("reserves key")
    with up.client() as c:
        posted = {b["asset"]: b["posted"] for b in c.balances("acme.main")["data"]}
        assert int(posted["BTC"]) > 0, posted

        def snapshot_counting_acme():
            latest = c.get("/v1/reserves/snapshots", {"limit": 1})["data"]
            if not latest:
                return None
            sid = latest[0]["snapshot_id"]
            proof = c.get(f"/v1/reserves/snapshots/{sid}/proofs/acme")
            btc = proof["account_balances"][proof["assets"].index("BTC")]
            return (sid, proof) if btc == posted["BTC"] else None

        sid, proof = wait_until(snapshot_counting_acme, 150, f"a snapshot counting acme's BTC {posted['BTC']}")
        files = {"proof": proof, "header": c.get(f"/v1/reserves/snapshots/{sid}/header"),
                 "assets": c.get(f"/v1/reserves/snapshots/{sid}/assets"),
                 # docs/walkthrough.md's query string as typed (`custody call` sends a path as given)
                 "proof-compact": c.get(f"/v1/reserves/snapshots/{sid}/proofs/acme?format=por-mst/1-compact")}
    for name, doc in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    verify = pathlib.Path(sys.executable).parent / "custody-verify"
    header = ["--signed-header", str(tmp_path / "header.json"), "--public-key", key]
    r = subprocess.run([verify, "proof", tmp_path / "proof.json", *header, "--account-id", "acme"],
                       capture_output=True, text=True, timeout=60)
    assert_eq((r.returncode, f"your balance {posted['BTC']} is counted" in r.stdout), (0, True), f"proof: {r.stdout}{r.stderr}")
    r = subprocess.run([verify, "proof", tmp_path / "proof-compact.json", *header, "--account-id", "acme"],
                       capture_output=True, text=True, timeout=60)
    assert_eq((r.returncode, files["proof-compact"]["format"], f"your balance {posted['BTC']} is counted" in r.stdout),
              (0, "por-mst/1-compact", True), f"compact proof: {r.stdout}{r.stderr}")
    # The password by file, as the walkthrough types it: never on a command line.
    rpc = f"http://custody-dev@127.0.0.1:{up.ports['btcd_rpc']}"
    r = subprocess.run([verify, "assets", tmp_path / "assets.json", *header, "--bitcoin-rpc", rpc,
                        "--bitcoin-rpc-password-file", up.data_dir / "chains" / "btcd-rpc-password"],
                       capture_output=True, text=True, timeout=60)
    assert_eq(r.returncode, 0, f"assets, re-read from btcd: {r.stdout}{r.stderr}")
    other = "00" * 32 if key != "00" * 32 else "11" * 32
    r = subprocess.run([verify, "proof", tmp_path / "proof.json", "--signed-header", str(tmp_path / "header.json"),
                        "--public-key", other], capture_output=True, text=True, timeout=60)
    assert_eq(r.returncode, 1, f"another pinned key is refused: {r.stdout}{r.stderr}")


def test_restart_keeps_cluster_vault_key_and_anvil_state_then_sigterm_leaves_nothing(world):
    up = world["up"]
    key_id, address = up.banner("admin API key"), up.banner("deposit 0/0")
    btc_height = up.btc("getblockcount")
    eth_balance = up.eth("eth_getBalance", "0x000000000000000000000000000000000000dEaD", "latest")
    up.stop()
    assert_eq(up.proc.popen.returncode in (0, 128 + signal.SIGTERM), True, f"dev up's exit status {up.proc.popen.returncode}")
    again = world["start"](2)
    assert_eq((again.banner("admin API key"), again.banner("deposit 0/0")), (key_id, address), "key and hot vault after a restart")
    assert_eq(again.eth("eth_getBalance", "0x000000000000000000000000000000000000dEaD", "latest"), eth_balance,
              "Anvil state after a restart")
    # btcd removes its regtest database at start: a new chain, said so, and the faucet follows it.
    assert "btcd starts a new regtest chain" in again.proc.stderr_path.read_text()
    assert_eq(again.btc("getblockcount"), 110, "the new regtest chain's height (coinbases matured)")
    assert btc_height > 110, btc_height
    r = again.dev("fund-btc", address, 20_000_000)
    assert_eq(r.returncode, 0, f"fund-btc on the new chain (stderr: {r.stderr[-2000:]})")
    with again.client() as c:
        assert_eq(c.whoami()["key_id"], key_id, "the same key works after a restart")
    again.stop()
    r = again.dev("mine", "bitcoin", 1)  # nothing runs any more: a clear refusal, no traceback
    assert_eq((r.returncode, "chain_unreachable" in r.stderr, "Traceback" in r.stderr), (1, True, False),
              f"mine after the stop: {r.stderr[-500:]}")


def test_a_new_anvil_chain_under_the_node_is_rescanned_not_refused_for_good(world):
    """`dev up` killed outright leaves no Anvil state dump: the next Anvil is a new chain (a new
    genesis). The node's stored view of the old one would be a reorg deeper than the scanner
    follows, refused at every pass; dev up drops it and the node rescans the new chain."""
    state_file = world["data_dir"] / "chains" / "anvil" / "state.json"
    chains_db = world["data_dir"] / "chains.db"
    old_genesis = _stored_block_hash(chains_db, "ethereum:1337", 0)
    assert old_genesis, "the node stored the ethereum chain's genesis in the runs before"
    state_file.unlink()  # as if the last run had been killed before Anvil could dump it
    up = world["start"](3)
    new_genesis = up.eth("eth_getBlockByNumber", "0x0", False)["hash"]
    assert new_genesis != old_genesis
    log = up.proc.stderr_path.read_text()
    assert "Anvil started a new chain" in log and "dev_chain_state_reset" in log, log[-3000:]
    wait_until(lambda: _stored_block_hash(chains_db, "ethereum:1337", 0) == new_genesis, 60,
               "the node scanned the new ethereum chain from its genesis")
    assert "ReorgTooDeep" not in up.proc.stderr_path.read_text()
    up.stop()


def _stored_block_hash(chains_db: pathlib.Path, chain_id: str, height: int) -> str | None:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(chains_db, timeout=10)) as conn:
        row = conn.execute("SELECT hash FROM chains_blocks WHERE chain_id = ? AND height = ?", (chain_id, height)).fetchone()
    return row[0] if row else None
