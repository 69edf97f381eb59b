"""`custody dev up`: the local system on development defaults (what `make run` starts).

In the foreground, under `.data/dev/` (the data directory):
1. the signer cluster: on first start `custody cluster init` writes a 3-peer, threshold-1
   cluster (certificates, pins, policies) to `cluster/`; three `custody signer` processes
   start (each a separate process, mTLS between them), each generating its own pre-parameters
   in the background and sealing its shares under a passphrase kept in `cluster/passphrase`
   (mode 0600, development only: production operators pass their own through
   CUSTODY_SIGNER_PASSPHRASE);
2. on first start, distributed key generation of the `hot` vault (it waits until every peer
   has its pre-parameters: a few minutes on 2 cores), recorded in `vaults.json`: group public
   key, chain code, committee — never a private key, which exists nowhere;
3. the node's custody API over a SQLite store (`node.db`) with the webhook worker, and on first
   start an admin API key whose private key is written to `admin.pem` (0600; it never enters
   the database).
It prints the API URL, the key, the hot vault's first regtest deposit address and the
environment lines for the `custody` CLI. Ctrl-C stops everything it started. btcd and Anvil
(the local dev chains) are started by the test suite today, not yet by this command.
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


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="run the local system in the foreground (Ctrl-C stops it)")
    up.add_argument("--data-dir", default=".data/dev")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--signer-base-port", type=int, default=7400, help="peer i listens on base+i, metrics on base+100+i")
    up.add_argument("--no-cluster", action="store_true", help="start the API only")


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
            init_cluster(self.root, DEV_PEERS, DEV_THRESHOLD, ports, metrics, environment="production")
            pw = self.root / "passphrase"
            pw.write_text(secrets.token_urlsafe(32))
            pw.chmod(0o600)
            _say(f"wrote a {DEV_THRESHOLD + 1}-of-{DEV_PEERS} signer cluster to {self.root}")
        return json.loads(info_path.read_text())

    def start(self, info: dict) -> None:
        env = {**os.environ, "CUSTODY_SIGNER_PASSPHRASE": (self.root / "passphrase").read_text().strip()}
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


def _ensure_hot_vault(data_dir: pathlib.Path, info: dict) -> dict:
    from mpc.client import ClusterClient
    from node.ports import SigningRefused

    path = data_dir / "vaults.json"
    vaults = json.loads(path.read_text()) if path.exists() else {}
    if "hot" in vaults:
        return vaults["hot"]
    client = ClusterClient.from_cluster_dir(info)
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


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the signer peers


def run(args) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    data_dir = pathlib.Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    hot = None
    try:
        if not args.no_cluster:
            cluster = DevCluster(data_dir / "cluster", args.signer_base_port)
            info = cluster.ensure_initialised()
            cluster.start(info)
            hot = _ensure_hot_vault(data_dir, info)
        return _serve_api(args, data_dir, hot)
    finally:
        if cluster is not None:
            cluster.stop()


def _serve_api(args, data_dir: pathlib.Path, hot: dict | None) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from node.store import open_store

    url = f"sqlite:///{data_dir / 'node.db'}"
    store = open_store(url)
    info = _first_key(data_dir, store.engine)
    settings = ApiSettings(
        database_url=url, environment="development", webhook_worker=True, webhook_allow_insecure_urls=True
    )
    api_url = f"http://{args.host}:{args.port}"
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
    print(
        f"""
custody dev: the node's API is starting.

  API            {api_url}   (OpenAPI: {api_url}/openapi.json)
  admin API key  {info['id']}  (all scopes)
  private key    {info['private_key']}
  database       {url}
{vault_lines}
  export CUSTODY_API_URL={api_url} CUSTODY_API_KEY_ID={info['id']} CUSTODY_API_PRIVATE_KEY={info['private_key']}
  .venv/bin/custody balances <sub-account>

  Threshold keygen + signing demo in one process: .venv/bin/custody demo
""",
        file=sys.stderr,
        flush=True,
    )
    os.environ.setdefault("CUSTODY_LOG_LEVEL", "info")
    uvicorn.run(create_app(settings, store=store), host=args.host, port=args.port, log_level="warning")
    return 0
