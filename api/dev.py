"""`custody dev up`: the whole system locally on development defaults (what `make run` starts).

In the foreground, under `.data/dev/` (the data directory):
1. the local dev chains (api/dev_chains.py): btcd in regtest (mining to the dev faucet, an
   outside wallet) and Anvil, as child processes with their data under `chains/`;
2. the signer cluster: on first start `custody cluster init` writes a 3-peer, threshold-1
   cluster (certificates, pins, policies) to `cluster/`; three `custody signer` processes
   start (each a separate process, mTLS between them), each generating its own pre-parameters
   in the background and sealing its shares under a passphrase kept in `cluster/<peer>/passphrase`
   (mode 0600, development only: a file, never a command line; production operators choose
   their own passphrase_file or CUSTODY_SIGNER_PASSPHRASE);
3. on first start, distributed key generation of the `hot` vault (it waits until every peer
   has its pre-parameters: a few minutes on 2 cores), recorded in `vaults.json`: group public
   key, chain code, committee — never a private key, which exists nowhere;
4. on first start, the development risk policy `policy.toml` (the node's first policy, see
   `dev_policy`): withdrawals up to DEV_AUTO_APPROVE (0.1 BTC / 0.1 ETH) go out without
   approvals, one approval up to 1 BTC / 1 ETH, two above; a sub-account needs a KYC tier
   (`custody dev kyc`); destinations must be whitelisted and are usable after a time-lock of
   DEV_WHITELIST_TIMELOCK_S seconds. Its approvers are the cluster's dev approvers, whose
   Ed25519 seeds are in `cluster/approvers/<id>.key` (0600) for `custody approve --key-file`;
   the signer peers' own policy carries the same bands (a peer re-checks every approval);
5. `node.toml`, the node process's config (api/node_root.py) for these chains, this cluster,
   `vaults.json`, `policy.toml` and the store, with proof-of-reserves snapshots: on first start
   `reserves/` gets a random passphrase file (0600, development only) and the node's Ed25519
   snapshot key, stored only sealed under it (`custody reserves init-key`'s step); the node
   takes a snapshot every DEV_RESERVES_INTERVAL_S once customers hold balances, and the API
   serves each client's own inclusion proofs;
6. the node itself, in this process (api.node_root: NodeRoot + serve): the custody API over a
   SQLite store (`node.db`) with the webhook worker, the chain scan that credits deposits and
   the withdrawal pipeline; on first start an admin API key whose private key is written to
   `admin.pem` (0600; it never enters the database).
It prints the API URL, the key, the hot vault's first regtest address, the chains and the
environment lines for the `custody` CLI. Ctrl-C (or SIGTERM) stops everything it started.
Without the cluster or the chains (--no-cluster / --no-chains) it serves the API alone.

The other dev commands act on a running `dev up` (same --data-dir):
    custody dev kyc SUB_ACCOUNT [--tier standard]           compliance's step: a KYC tier (offline, node.db)
    custody dev fund-btc ADDRESS AMOUNT_SATS [--blocks N]   the faucet pays, N blocks are mined
    custody dev fund-eth ADDRESS AMOUNT_WEI [--blocks N]    Anvil's dev account pays, N blocks
    custody dev mine bitcoin|ethereum N
    custody dev webhook-receiver --port P                   prints verified webhook deliveries

Tests only: CUSTODY_DEV_TEST_PREPARAMS=<dir of fixture pre-params> makes a NEW cluster a test
cluster (`environment = "test"` in each signer's config) whose peers load those fixtures
instead of generating their own — what keeps the functional test of this command short. A
signer loads fixture pre-params only when its own config says `environment = "test"`, which
`custody cluster init` writes only when asked; production clusters never do.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from node.limits import DEV_KEYGEN_DEADLINE_S, DEV_PEER_READY_DEADLINE_S, DEV_POLL_S

DEV_PEERS = 3
DEV_THRESHOLD = 1  # any 2 of the 3 peers sign
# Confirmation depths on the dev chains: a deposit is credited (and a withdrawal completes)
# this many blocks deep; `custody dev fund-*` mines that many by default.
DEV_CONFIRMATIONS = {"bitcoin": 3, "ethereum": 3}
TEST_PREPARAMS_ENV = "CUSTODY_DEV_TEST_PREPARAMS"
HOT = "hot"
# The development policy (policy.toml of a fresh dev node; the signer peers get the same bands).
DEV_AUTO_APPROVE = {"BTC": 10_000_000, "ETH": 10**17}  # at most this: no approvals
DEV_UNIT = {"BTC": 100_000_000, "ETH": 10**18}  # one approval up to 1 unit, two up to 50
DEV_WHITELIST_TIMELOCK_S = 5
DEV_KYC_TIER = "standard"
DEV_RESERVES_INTERVAL_S = 60  # a snapshot a minute (the shortest allowed): the walkthrough sees one soon
DEV_RESERVES_TICK_S = 10  # the node's reserves worker looks this often whether one is due


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="run the local system in the foreground (Ctrl-C stops it)")
    up.add_argument("--data-dir", default=".data/dev")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--signer-base-port", type=int, default=7400, help="peer i listens on base+i, metrics on base+100+i")
    up.add_argument("--btcd-rpc-port", type=int, default=18556)
    up.add_argument("--btcd-p2p-port", type=int, default=18555)
    up.add_argument("--anvil-port", type=int, default=8545)
    up.add_argument("--no-cluster", action="store_true", help="start without the signer cluster")
    up.add_argument("--no-chains", action="store_true", help="start without btcd and Anvil")
    fb = sub.add_parser("fund-btc", help="the regtest faucet pays ADDRESS, then blocks are mined")
    fb.add_argument("address")
    fb.add_argument("amount_sats", type=int, metavar="AMOUNT_SATS")
    fb.add_argument("--blocks", type=int, default=DEV_CONFIRMATIONS["bitcoin"], help="blocks mined after the payment")
    fb.add_argument("--data-dir", default=".data/dev")
    fe = sub.add_parser("fund-eth", help="Anvil's dev account pays ADDRESS, then blocks are mined")
    fe.add_argument("address")
    fe.add_argument("amount_wei", type=int, metavar="AMOUNT_WEI")
    fe.add_argument("--blocks", type=int, default=DEV_CONFIRMATIONS["ethereum"], help="blocks mined after the payment")
    fe.add_argument("--data-dir", default=".data/dev")
    mi = sub.add_parser("mine", help="mine blocks on a dev chain")
    mi.add_argument("chain", choices=("bitcoin", "ethereum"))
    mi.add_argument("blocks", type=int)
    mi.add_argument("--data-dir", default=".data/dev")
    ky = sub.add_parser("kyc", help="compliance's step on the dev node's database: a sub-account's KYC tier")
    ky.add_argument("sub_account")
    ky.add_argument("--tier", default=DEV_KYC_TIER, help="a tier of the active policy")
    ky.add_argument("--data-dir", default=".data/dev")
    wr = sub.add_parser("webhook-receiver", help="a webhook endpoint that verifies and prints deliveries")
    wr.add_argument("--host", default="127.0.0.1")
    wr.add_argument("--port", type=int, required=True)
    wr.add_argument("--secret-env", default="CUSTODY_WEBHOOK_SECRET", help="environment variable holding the secret")


def _say(msg: str) -> None:
    print(f"custody dev: {msg}", file=sys.stderr, flush=True)


def _first_key(data_dir: pathlib.Path, engine) -> dict:
    from api.client import generate_private_key, public_key_b64, write_private_key
    from api.signing import b64url_decode
    from node import apikeys

    info_path = data_dir / "admin.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if apikeys.get_api_key(engine, info["id"]) is not None:
            return info
    pem = data_dir / "admin.pem"
    if pem.exists():
        pem.unlink()  # its key is not in this database (a fresh data dir): make a new pair
    key = generate_private_key()
    write_private_key(pem, key)
    k = apikeys.create_api_key(
        engine, client_id=None, name="dev-admin", scopes=list(apikeys.SCOPES), public_key=b64url_decode(public_key_b64(key))
    )
    info = {"id": k.id, "client_id": k.client_id, "private_key": str(pem.resolve())}
    info_path.write_text(json.dumps(info))
    return info


class DevCluster:
    """The local signer peers as child processes (fork+exec: this process never loads the Go
    runtime before starting them, and never forks after)."""

    def __init__(self, root: pathlib.Path, base_port: int):
        self.root = root
        self.base_port = base_port
        self.procs: list[subprocess.Popen] = []

    def ensure_initialised(self) -> dict:
        info_path = self.root / "cluster.json"
        if not info_path.exists():
            from mpc.cluster_cli import init_cluster

            ports = [self.base_port + i for i in range(1, DEV_PEERS + 1)]
            metrics = [self.base_port + 100 + i for i in range(1, DEV_PEERS + 1)]
            fixtures_dir = os.environ.get(TEST_PREPARAMS_ENV)
            if fixtures_dir:
                fixtures = sorted(pathlib.Path(fixtures_dir).glob("preparams-*.json"))
                if len(fixtures) < DEV_PEERS:
                    raise SystemExit(f"custody dev: {TEST_PREPARAMS_ENV}={fixtures_dir} holds {len(fixtures)} fixture pre-params, need {DEV_PEERS}")
                _say(f"TEST CLUSTER: {TEST_PREPARAMS_ENV} is set, the peers use fixture pre-params (never in production)")
                init_cluster(self.root, DEV_PEERS, DEV_THRESHOLD, ports, metrics, environment="test",
                             preparams_fixtures=fixtures, policy_extra=signer_auto_bands(), passphrase_file=True)
            else:
                init_cluster(self.root, DEV_PEERS, DEV_THRESHOLD, ports, metrics, environment="production",
                             policy_extra=signer_auto_bands(), passphrase_file=True)
            _say(f"wrote a {DEV_THRESHOLD + 1}-of-{DEV_PEERS} signer cluster to {self.root}")
        info = json.loads(info_path.read_text())
        self._refuse_outdated(info)
        return info

    @staticmethod
    def _refuse_outdated(info: dict) -> None:
        """A dev cluster written before the peers' policies named their networks and fee limits
        would start and then refuse every signature (network_not_allowed): say so now."""
        for peer in info["peers"]:
            policy = pathlib.Path(peer["dir"]) / "policy.toml"
            text = policy.read_text() if policy.exists() else ""
            if "[networks]" not in text or "[fees.bitcoin]" not in text:
                raise SystemExit(
                    f"custody dev: the dev signer cluster in {pathlib.Path(peer['dir']).parent} was written before signer "
                    f"policies named their networks and fee limits ({policy} has no [networks] / [fees.*]); its peers "
                    "would refuse every signature. Remove that folder (the dev vault goes with it) and run again.")

    def start(self, info: dict) -> None:
        env = dict(os.environ)
        legacy = self.root / "passphrase"  # a cluster written before per-peer passphrase files
        if legacy.exists():
            env["CUSTODY_SIGNER_PASSPHRASE"] = legacy.read_text().strip()
        for peer in info["peers"]:
            d = pathlib.Path(peer["dir"])
            log = open(d / "signer.log", "ab")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "api.cli", "signer", "--config", str(d / "signer.toml")],
                    cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                )
            )
        deadline = time.monotonic() + DEV_PEER_READY_DEADLINE_S
        for peer, proc in zip(info["peers"], self.procs):
            while not self._ready(peer["metrics"]):
                if proc.poll() is not None:
                    raise SystemExit(f"custody dev: {peer['name']} exited ({proc.returncode}); see {peer['dir']}/signer.log")
                if time.monotonic() > deadline:
                    raise SystemExit(f"custody dev: {peer['name']} not ready after {DEV_PEER_READY_DEADLINE_S}s")
                time.sleep(DEV_POLL_S)
        _say("signer peers up: " + ", ".join(p["name"] for p in info["peers"]))

    @staticmethod
    def _ready(metrics_addr: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{metrics_addr}/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("ready"))
        except OSError:
            return False

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def signer_auto_bands() -> str:
    """Appended to each dev signer peer's policy (mpc/cluster_cli.py writes one approval up to
    1 unit, two up to 50): no approval up to DEV_AUTO_APPROVE, as the node's dev policy says.
    The peer sorts its bands by amount, so these come first."""
    lines = []
    for asset, amount in DEV_AUTO_APPROVE.items():
        lines += ["", "[[bands]]", f'asset = "{asset}"', f'amount_max = "{amount}"', "approvals_min = 0"]
    return "\n".join(lines) + "\n"


def dev_policy(approvers: dict[str, str], hot_vault_id: str) -> str:
    """The development risk policy (node/risk.py format) for the hot vault: bands matching the
    signer peers' (signer_auto_bands + mpc/cluster_cli.py), a KYC tier `standard`, whitelisted
    destinations after a short time-lock. `approvers`: id -> Ed25519 public key (hex)."""
    assert approvers, "the dev cluster has approvers"
    lines = ["# Written by `custody dev up` on the node's first start; development only.",
             "version = 1", "", "[approvers]"]
    lines += [f'{a} = "{pk}"' for a, pk in sorted(approvers.items())]
    lines += ["", "[fee_max]", 'bitcoin = "1000000"', f'ethereum = "{10**16}"']
    for asset, unit in DEV_UNIT.items():
        lines += ["", f"[kyc_tiers.{DEV_KYC_TIER}.{asset}]", f'per_withdrawal_max = "{10 * unit}"',
                  f'day_max = "{20 * unit}"', f'month_max = "{100 * unit}"']
    lines += ["", "[whitelist]", "required = true", f"timelock_s = {DEV_WHITELIST_TIMELOCK_S}", "",
              "[[vaults]]", f'id = "{hot_vault_id}"', 'kind = "hot"', "delay_s = 0", "bands = ["]
    for asset, unit in DEV_UNIT.items():
        for amount_max, n in ((DEV_AUTO_APPROVE[asset], 0), (unit, 1), (50 * unit, 2)):
            lines.append(f'  {{ asset = "{asset}", amount_max = "{amount_max}", approvals_min = {min(n, len(approvers))} }},')
    lines += ["]", ""]
    return "\n".join(lines)


def _ensure_dev_policy(data_dir: pathlib.Path, info: dict, hot: dict) -> pathlib.Path:
    """policy.toml on first start (the node bootstraps it once, on a fresh database; later
    changes go through propose/approve). The approvers' public keys come from their seeds."""
    from nacl.signing import SigningKey

    path = data_dir / "policy.toml"
    if not path.exists():
        pubs = {a: SigningKey(bytes.fromhex(pathlib.Path(f).read_text().strip())).verify_key.encode().hex()
                for a, f in info["approvers"].items()}
        path.write_text(dev_policy(pubs, hot["vault_id"]))
        _say(f"wrote the development risk policy {path}")
    return path


def _ensure_hot_vault(data_dir: pathlib.Path, info: dict) -> dict:
    from mpc.client import ClusterClient
    from node.ports import SigningRefused

    path = data_dir / "vaults.json"
    vaults = json.loads(path.read_text()) if path.exists() else {}
    if "hot" in vaults:
        return vaults["hot"]
    # The dev vault's key generation is a ceremony like any other: approved by the dev approvers.
    client = ClusterClient.from_cluster_dir(info, dev_approvals=True)
    committee = [p["name"] for p in info["peers"]]
    _say("key generation of the hot vault (waits for every peer's pre-parameters on first start)")
    deadline = time.monotonic() + DEV_KEYGEN_DEADLINE_S
    while True:
        try:
            vault = client.keygen("hot", committee, DEV_THRESHOLD)
            break
        except SigningRefused as exc:
            if "preparams_not_ready" not in str(exc) or time.monotonic() > deadline:
                raise SystemExit(f"custody dev: key generation refused: {exc}") from None
            time.sleep(DEV_POLL_S * 5)
    vaults["hot"] = {"vault_id": vault.vault_id, "committee": list(vault.committee), "threshold": vault.threshold,
                     "public_key": vault.public_key.hex(), "chain_code": vault.chain_code.hex()}
    path.write_text(json.dumps(vaults, indent=2))
    return vaults["hot"]


def _ensure_reserves_key(data_dir: pathlib.Path) -> dict:
    """The [reserves] section of node.toml; on first start its passphrase file (0600, random,
    development only: production passes its own) and the sealed snapshot key."""
    from api.dev_chains import write_secret
    from api.reserves_root import init_key, open_key
    from proofs.snapshot_key import public_hex

    d = data_dir / "reserves"
    d.mkdir(mode=0o700, exist_ok=True)
    r = {"store_dir": str(d / "store"), "node_id": "dev-node", "snapshot_key_file": str(d / "snapshot-key.sealed"),
         "passphrase_file": str(d / "passphrase"), "interval_s": DEV_RESERVES_INTERVAL_S, "every_s": DEV_RESERVES_TICK_S}
    if not pathlib.Path(r["passphrase_file"]).exists():
        write_secret(pathlib.Path(r["passphrase_file"]), secrets.token_urlsafe(32) + "\n")
    if not pathlib.Path(r["snapshot_key_file"]).exists():
        init_key(r)
        _say(f"wrote the sealed proof-of-reserves snapshot key {r['snapshot_key_file']}")
    r["public_key"] = public_hex(open_key(r))
    return r


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the signer peers


def run(args) -> int:
    from api.dev_chains import DevChainError

    try:
        if args.dev_command == "up":
            return _up(args)
        if args.dev_command == "webhook-receiver":
            from api.dev_webhooks import serve

            return serve(args.host, args.port, args.secret_env)
        from api import dev_chains

        data_dir = pathlib.Path(args.data_dir).resolve()
        if args.dev_command == "kyc":
            return _kyc(data_dir, args.sub_account, args.tier)
        if args.dev_command == "fund-btc":
            out = dev_chains.fund_btc(data_dir, args.address, args.amount_sats, args.blocks)
        elif args.dev_command == "fund-eth":
            out = dev_chains.fund_eth(data_dir, args.address, args.amount_wei, args.blocks)
        else:
            out = dev_chains.mine(data_dir, args.chain, args.blocks)
        print(json.dumps(out))
        return 0
    except DevChainError as exc:
        print(f"custody dev {args.dev_command}: {exc}", file=sys.stderr)
        return 1


def _kyc(data_dir: pathlib.Path, sub_account: str, tier: str) -> int:
    """Compliance staff's step (no API resource sets a KYC tier): the sub-account's tier in the
    dev node's database, journaled like every write. The tier must be one the policy names."""
    from node.ledger import Ledger
    from node.store import open_store
    from node.withdrawals import WithdrawalError, Withdrawals

    db = data_dir / "node.db"
    if not db.exists():
        print(f"custody dev kyc: no {db}: has `custody dev up` run with this --data-dir?", file=sys.stderr)
        return 1
    store = open_store(f"sqlite:///{db}")
    try:
        w = Withdrawals(Ledger(store), {})
        if tier not in w.policy().tiers:
            print(f"custody dev kyc: kyc_tier_unknown: {tier!r} (the policy's tiers: {sorted(w.policy().tiers)})",
                  file=sys.stderr)
            return 1
        w.set_profile(sub_account, tier, actor="dev:compliance")
    except WithdrawalError as exc:
        print(f"custody dev kyc: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    print(json.dumps({"sub_account_id": sub_account, "kyc_tier": tier}))
    return 0


def _up(args) -> int:
    from api.dev_chains import DevChains, write_node_config

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    data_dir = pathlib.Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    chains = None
    hot = None
    try:
        if not args.no_chains:
            chains = DevChains(data_dir, args.btcd_rpc_port, args.btcd_p2p_port, args.anvil_port)
            chains.ensure_initialised()
            chains.start()
            _say(f"dev chains up: btcd (regtest) {chains.btcd_url}, Anvil (chain id 1337) {chains.anvil_url}")
            if chains.btc_chain_restarted:
                _say("NOTE: btcd starts a new regtest chain at every start (it removes its regtest database): "
                     "bitcoin deposits of the previous run are gone from the chain; delete the data dir for a clean slate")
        if not args.no_cluster:
            cluster = DevCluster(data_dir / "cluster", args.signer_base_port)
            info = cluster.ensure_initialised()
            cluster.start(info)
            hot = _ensure_hot_vault(data_dir, info)
        if chains is not None and cluster is not None:
            from api.dev_chains import forget_replaced_chains

            _ensure_dev_policy(data_dir, info, hot)
            reserves = _ensure_reserves_key(data_dir)
            path = write_node_config(data_dir, chains, data_dir / "cluster" / "cluster.json", DEV_CONFIRMATIONS,
                                     hot_vault_id=hot["vault_id"], host=args.host, port=args.port, reserves=reserves)
            _say(f"node config: {path}")
            for chain_id in forget_replaced_chains(data_dir, chains):
                if chain_id.startswith("ethereum"):
                    _say("NOTE: Anvil started a new chain (its state was not saved: `dev up` was killed, not stopped): "
                         "ethereum deposits of the previous run are gone from the chain; the node rescans the new one")
            return _serve_node(args, data_dir, path, hot, chains, reserves)
        return _serve_api(args, data_dir)
    finally:
        if cluster is not None:
            cluster.stop()
        if chains is not None:
            chains.stop()


def _banner(api_url: str, info: dict, db_url: str, hot: dict | None = None, chains=None,
            reserves: dict | None = None) -> str:
    vault_lines = ""
    if hot is not None:
        from chains.bitcoin.tx import p2wpkh_address
        from chains.keys import Bip32VaultKeys

        keys = Bip32VaultKeys(bytes.fromhex(hot["public_key"]), bytes.fromhex(hot["chain_code"]))
        vault_lines = (
            f"  hot vault      {hot['vault_id']}: {hot['threshold'] + 1}-of-{len(hot['committee'])} "
            f"({', '.join(hot['committee'])}), group key {hot['public_key']}\n"
            f"  deposit 0/0    {p2wpkh_address(keys.child_public_key((0, 0)), 'regtest')} (regtest)\n"
        )
    chain_lines = ""
    if chains is not None:
        chain_lines = (
            f"  btcd (regtest) {chains.btcd_url}   Anvil (chain id 1337) {chains.anvil_url}\n"
            f"  fund           .venv/bin/custody dev fund-btc <address> <sats>   (mines {DEV_CONFIRMATIONS['bitcoin']} blocks)\n"
            f"                 .venv/bin/custody dev fund-eth <address> <wei>    (mines {DEV_CONFIRMATIONS['ethereum']} blocks)\n"
            f"  policy         auto-approved up to {DEV_AUTO_APPROVE['BTC']} sats; approver keys under cluster/approvers/; "
            f"whitelist time-lock {DEV_WHITELIST_TIMELOCK_S} s\n"
        )
    if reserves is not None:
        chain_lines += (
            f"  reserves key   {reserves['public_key']}   (snapshots every {reserves['interval_s']} s: "
            f"GET /v1/reserves/snapshots; verify with custody-verify --public-key)\n"
        )
    return f"""
custody dev: the node's API is starting.

  API            {api_url}   (OpenAPI: {api_url}/openapi.json)
  admin API key  {info['id']}  (all scopes)
  private key    {info['private_key']}
  database       {db_url}
{vault_lines}{chain_lines}
  export CUSTODY_API_URL={api_url} CUSTODY_API_KEY_ID={info['id']} CUSTODY_API_PRIVATE_KEY={info['private_key']}
  .venv/bin/custody call POST /v1/customers '{{"id": "acme", "name": "Acme Ltd"}}'
  .venv/bin/custody call POST /v1/customers/acme/sub-accounts '{{"name": "main"}}'
  .venv/bin/custody call POST /v1/sub-accounts/acme.main/deposit-addresses '{{"asset": "BTC"}}'   then fund-btc it
  .venv/bin/custody balances acme.main
  The whole walkthrough (webhooks, funding, a withdrawal): docs/walkthrough.md.

  Threshold keygen + signing demo in one process: .venv/bin/custody demo
"""


def _serve_node(args, data_dir: pathlib.Path, config: pathlib.Path, hot: dict, chains, reserves: dict) -> int:
    """The node process's composition root in this process (api/node_root.py): it registers the
    vault, bootstraps the policy on a fresh database, serves the API and runs its workers (scan
    and deposits, withdrawal pipeline, webhooks) until SIGTERM/SIGINT."""
    from api.node_root import ConfigError, NodeRoot, load_config, serve

    try:
        root = NodeRoot(load_config(config))
    except ConfigError as exc:
        raise SystemExit(f"custody dev: the node refused its config {config}: {exc}") from None
    try:
        info = _first_key(data_dir, root.store.engine)
    except BaseException:
        root.stop()
        raise
    print(_banner(f"http://{args.host}:{args.port}", info, root.cfg["database_url"], hot, chains, reserves), file=sys.stderr,
          flush=True)
    os.environ.setdefault("CUSTODY_LOG_LEVEL", "info")
    serve(root, args.host, args.port)  # stops the workers and closes the stores on return
    return 0


def _serve_api(args, data_dir: pathlib.Path) -> int:
    """Without the cluster or the chains: the API alone over the dev store."""
    import uvicorn

    from api.app import create_app
    from api.dev_chains import dev_secrets_key
    from api.settings import ApiSettings
    from node.store import open_store

    url = f"sqlite:///{data_dir / 'node.db'}"
    store = open_store(url)
    info = _first_key(data_dir, store.engine)
    settings = ApiSettings(
        database_url=url, secrets_key_file=dev_secrets_key(data_dir), environment="development", webhook_worker=True,
        webhook_allow_insecure_urls=True
    )
    print(_banner(f"http://{args.host}:{args.port}", info, url), file=sys.stderr, flush=True)
    os.environ.setdefault("CUSTODY_LOG_LEVEL", "info")
    uvicorn.run(create_app(settings, store=store), host=args.host, port=args.port, log_level="warning",
                loop="uvloop", http="httptools", timeout_keep_alive=5, timeout_graceful_shutdown=10,
                limit_concurrency=1000)
    return 0
