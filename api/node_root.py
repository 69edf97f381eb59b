"""The node process's composition root: one TOML config, one process holding the services,
serving the custody API and running the background workers as bounded threads.

    custody node --config /etc/custody/node.toml

    from api.node_root import load_config, NodeRoot, serve
    root = NodeRoot(load_config(path)); serve(root, host, port)       # until SIGTERM / SIGINT

The config is a superset of the withdrawal worker's (api/withdrawals_root.py: environment,
database_url, chain_state_url, cluster_file, [confirmations], [bitcoin], [ethereum]) with:

    vaults_file = "/etc/custody/vaults.json"   # optional: vaults to register at start (public
                                               #   parts only: {"hot": {"vault_id", "committee",
                                               #   "threshold", "public_key", "chain_code",
                                               #   "kind"?}}), with their ledgers and wallets
    policy_file = "/etc/custody/policy.toml"   # optional: the first risk policy of a fresh node
                                               #   (refused once one is active: then propose)
    hot_vault_id = "hot"                       # optional: the vault paying client withdrawals
    [deposits]                                 # optional, as the withdrawal worker reads it:
    vault = "hot"                              #   deposit addresses' vault, first_index, and
    [deposits.sweep_min]                       #   sweeps per asset; without it: addresses of the
    BTC = "100000"                             #   hot vault, no sweeps
    [api]                                      # api.settings.ApiSettings fields except the
    host = "127.0.0.1"                         #   database (the node's); plus host and port
    port = 8080
    secrets_key_file = "/etc/custody/api-secrets.key"  # required: seals webhook secrets at rest
    environment = "production"                 # "development": http:// webhook URLs allowed
    [workers]                                  # seconds between passes; 0 turns a worker off
    scan_every_s = 2                           # chain scan + deposit sync
    pipeline_every_s = 0.2                     # withdrawal pipeline (immediately again when busy)
    rebalance_every_s = 0                      # hot/cold rebalancer (off unless set)
    sweep_every_s = 30                         # deposit sweeps (with a [deposits] section)

Threads: the API (uvicorn, in the calling thread), the webhook delivery worker (started by the
app's lifespan), and one thread per worker above. Each worker is a loop with a stop event,
one pass at a time, every pass bounded by the domain's batch limits; an exception in a pass is
logged and the pass retried at the next interval (a chain node or the database away). On
SIGTERM/SIGINT the server stops accepting, the workers finish their pass and are joined within
NODE_SHUTDOWN_DEADLINE_S, and the stores are closed.

Chain adapters are shared by the scan, the pipeline, the sweeper and the API (deposit
addresses); each adapter is used under its own lock (`Serialised`), so a scan never interleaves
with a build or a broadcast on the same chain's state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import sys
import threading
import time

from api.withdrawals_root import ConfigError, open_chains, signing_pipeline
from api.withdrawals_root import load_config as load_worker_config
from node import limits
from node.client_withdrawals import ClientWithdrawalError
from node.log import get as get_log

log = get_log("api.node")

LEDGER_SCALES = {"BTC": 8, "ETH": 18}
CHAIN_ASSETS = {"bitcoin": ("BTC",), "ethereum": ("ETH",)}


def load_config(path) -> dict:
    """The node's config (see the module docstring). Raises ConfigError naming what is wrong."""
    cfg = load_worker_config(path)
    api = dict(cfg.get("api", {}))
    port = api.get("port", 8080)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError("api.port must be an integer 0..65535")
    workers = dict(cfg.get("workers", {}))
    for name, value in workers.items():
        if name not in WORKER_DEFAULTS:
            raise ConfigError(f"workers.{name}: unknown worker (known: {sorted(WORKER_DEFAULTS)})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= limits.NODE_WORKER_INTERVAL_MAX_S:
            raise ConfigError(f"workers.{name} must be 0..{limits.NODE_WORKER_INTERVAL_MAX_S} seconds")
    for key in ("vaults_file", "policy_file"):
        if key in cfg and not pathlib.Path(cfg[key]).is_file():
            raise ConfigError(f"{key}: no file {cfg[key]}")
    return cfg


WORKER_DEFAULTS = {"scan_every_s": 2.0, "pipeline_every_s": limits.WITHDRAWAL_WORKER_POLL_S, "rebalance_every_s": 0.0,
                   "sweep_every_s": 30.0, "reserves_every_s": 60.0}


class Serialised:
    """A chain adapter used under a lock: every method call holds it (re-entrant)."""

    def __init__(self, adapter, lock: threading.RLock | None = None):
        self._adapter = adapter
        self._lock = lock or threading.RLock()

    def __getattr__(self, name):
        value = getattr(self._adapter, name)
        if not callable(value):
            return value
        lock = self._lock

        def locked(*args, **kwargs):
            with lock:
                return value(*args, **kwargs)

        return locked


@dataclasses.dataclass
class Worker:
    """One background loop: `fn()` returns how much it did (truthy: run again at once)."""

    name: str
    every_s: float
    fn: object
    stop: threading.Event
    thread: threading.Thread | None = None
    passes: int = 0
    failures: int = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"node-{self.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        log.info("worker_started", worker=self.name, every_s=self.every_s)
        while not self.stop.is_set():
            busy = 0
            try:
                busy = self.fn()
                self.passes += 1
            except Exception:  # noqa: BLE001 - a chain node or the database away: log, next pass
                self.failures += 1
                log.exception("worker_pass_failed", worker=self.name)
            if not busy:
                self.stop.wait(self.every_s)
        log.info("worker_stopped", worker=self.name)


class NodeRoot:
    """What the node process holds: the store, ledger, withdrawals (evented), chain adapters,
    the cluster client, the pipeline, deposits (node/deposits/), the API app
    and the workers. Construction does the operator's idempotent set-up (vaults, ledgers,
    wallets, first policy) and starts nothing; `start_workers()` / `stop()`."""

    def __init__(self, cfg: dict, *, wall_clock_ns=None):
        from chains.state import make_engine
        from node.client_withdrawals import ClientWithdrawalError, ClientWithdrawals, evented_ledger
        from node.store import open_store
        from node.withdrawals import Withdrawals

        self.cfg = cfg
        self.stop_event = threading.Event()
        self.workers: list[Worker] = []
        self.store = open_store(cfg["database_url"], schema=cfg.get("database_schema"))
        self.ledger = evented_ledger(self.store)
        self.chain_engine = make_engine(cfg["chain_state_url"])
        self.chains, networks = open_chains(cfg, self.chain_engine, Serialised)
        kw = {} if wall_clock_ns is None else {"wall_clock_ns": wall_clock_ns}
        self.withdrawals = Withdrawals(self.ledger, networks, **kw)
        self._setup()  # registers the config's vaults before the adapters learn their keys
        self.cluster, self.pipeline = signing_pipeline(cfg, self.withdrawals, self.chains)
        self.client_withdrawals = ClientWithdrawals(self.withdrawals, hot_vault_id=cfg.get("hot_vault_id"))
        self.deposits = self._deposits()
        self.app = self._app()
        self.reserves_job = None
        self._reserves_refused: str | None = None
        if "reserves" in cfg:  # proof of reserves (api/reserves_root.py): the API serves the store
            from api.reserves_root import reserves_section
            from proofs.serving import ReservesReader

            self.app.state.reserves_reader = ReservesReader(reserves_section(cfg)["store_dir"], self.store.engine)

    # ---------------------------------------------------------------- set-up
    def _setup(self) -> None:
        """Idempotent operator set-up from the config: vaults, their ledgers and wallets, the
        first policy. Public key material only: a vault file never holds a share."""
        from node.ledger import LedgerKind
        from node.ports import Vault
        from node.wallets import Wallets

        actor = "operator:config"
        for asset, scale in LEDGER_SCALES.items():
            chain = "bitcoin" if asset == "BTC" else "ethereum"
            if chain in self.chains:
                self.ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor=actor)
        for token in self.cfg.get("ethereum", {}).get("tokens", []):
            self.ledger.create_ledger(f"ERC20:{token}", int(self.cfg["ethereum"].get("token_scale", 18)), LedgerKind.CRYPTO,
                                      actor=actor)
        if "vaults_file" in self.cfg:
            try:
                entries = json.loads(pathlib.Path(self.cfg["vaults_file"]).read_text())
                vaults = {name: (Vault(v["vault_id"], tuple(v["committee"]), int(v["threshold"]), bytes.fromhex(v["public_key"]),
                                       bytes.fromhex(v["chain_code"])), v.get("kind", "hot")) for name, v in entries.items()}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"vaults_file {self.cfg['vaults_file']}: {exc}") from None
            wallets = Wallets(self.ledger)
            have = {(w.vault_id, w.asset) for w in wallets.wallets()}
            for vault, kind in vaults.values():
                self.withdrawals.register_vault(vault, kind, actor=actor)
                for chain in self.chains:
                    for asset in CHAIN_ASSETS[chain] + tuple(f"ERC20:{t}" for t in (self.cfg.get("ethereum", {}).get("tokens", [])
                                                                                    if chain == "ethereum" else ())):
                        if (vault.vault_id, asset) not in have:
                            wallets.create_wallet(f"{vault.vault_id}:{asset}", vault.vault_id, asset, kind, actor=actor)
        if "policy_file" in self.cfg:
            from node.withdrawals import WithdrawalError

            try:
                self.withdrawals.policy()
            except WithdrawalError:
                self.withdrawals.bootstrap_policy(pathlib.Path(self.cfg["policy_file"]).read_text(), actor=actor)

    def _deposits(self):
        """[deposits] as the withdrawal worker reads it (the same wiring: Deposits and the
        Sweeper); without it, deposit addresses of the hot vault and no sweeps; without a hot
        vault, issuing addresses is refused (chain_not_configured)."""
        from api.withdrawals_root import World
        from node.deposits import Deposits

        self.sweeper = None
        if "deposits" in self.cfg:
            World._deposits(self, self.cfg["deposits"])  # sets self.deposits and self.sweeper
            return self.deposits
        try:
            vault_id = self.client_withdrawals.hot_vault_id()
        except ClientWithdrawalError:
            return Deposits(self.ledger, {}, vault_id="unconfigured")
        return Deposits(self.ledger, self.chains, vault_id=vault_id)

    def vault_address(self, vault_id: str, asset: str) -> str:
        from node.withdrawals import VAULT_WALLET_PATH, chain_of

        return self.chains[chain_of(asset)].address(vault_id, VAULT_WALLET_PATH)

    def _app(self):
        from api.app import Services, create_app
        from api.settings import ApiSettings

        api = {k: v for k, v in self.cfg.get("api", {}).items() if k not in ("host", "port")}
        try:
            settings = ApiSettings(database_url=self.cfg["database_url"], database_schema=self.cfg.get("database_schema"), **api)
        except Exception as exc:  # pydantic's ValidationError names the field
            raise ConfigError(f"[api]: {exc}") from None
        return create_app(settings, self.store, Services(self.client_withdrawals, self.deposits))

    # ---------------------------------------------------------------- workers
    def scan_once(self) -> int:
        n = 0
        for adapter in self.chains.values():
            adapter.scan()
            if adapter.chain in self.deposits.chains:
                report = self.deposits.sync(adapter)
                n += report.total
        return n

    def rebalance_once(self) -> int:
        from node.rebalance import Rebalancer
        from node.withdrawals import chain_of

        def balance(asset: str, vault_id: str) -> int:
            a = self.chains[chain_of(asset)]
            if a.chain == "bitcoin":
                return a.balance(vault_id)
            with a.state.begin() as st:
                addrs = [addr for addr, (v, _p, _r) in st.addresses().items() if v == vault_id]
            return sum(a.balance(addr, asset) for addr in addrs)

        Rebalancer(self.withdrawals, balance, self.vault_address).run_once()
        return 0

    def sweep_once(self) -> int:
        return len(self.sweeper.run_once())

    def reserves_once(self) -> int:
        """The snapshot job's tick: a snapshot when one is due ([reserves] interval_s), announced."""
        if self.reserves_job is None:
            from api.reserves_root import build_job

            self.reserves_job = build_job(self, self.cfg)  # opens the sealed snapshot key
        from api.reserves_root import snapshot_refusals

        try:
            taken = self.reserves_job.tick() is not None
        except snapshot_refusals() as exc:
            # Expected: one line each time the reason changes, not a traceback per tick.
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._reserves_refused:
                log.warning("reserves_snapshot_refused", reason=reason)
            self._reserves_refused = reason
            return 0
        self._reserves_refused = None
        return int(taken)

    def start_workers(self) -> None:
        every = {**WORKER_DEFAULTS, **self.cfg.get("workers", {})}
        plan = [("scan", every["scan_every_s"], self.scan_once),
                ("pipeline", every["pipeline_every_s"], self.pipeline.run_once),
                ("rebalance", every["rebalance_every_s"], self.rebalance_once)]
        if self.sweeper is not None:
            plan.append(("sweep", every["sweep_every_s"], self.sweep_once))
        if "reserves" in self.cfg:
            plan.append(("reserves", every["reserves_every_s"], self.reserves_once))
        assert len(plan) <= limits.NODE_WORKERS_MAX
        for name, every_s, fn in plan:
            if every_s and self.chains:
                w = Worker(name, float(every_s), fn, self.stop_event)
                w.start()
                self.workers.append(w)

    def stop(self) -> None:
        """Stops the workers (each finishes its pass) within NODE_SHUTDOWN_DEADLINE_S, then
        closes the stores."""
        self.stop_event.set()
        deadline = time.monotonic() + limits.NODE_SHUTDOWN_DEADLINE_S
        for w in self.workers:
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
                if w.thread.is_alive():
                    log.warning("worker_did_not_stop", worker=w.name)
        self.store.dispose()
        self.chain_engine.dispose()


def serve(root: NodeRoot, host: str, port: int) -> None:
    """Runs the API (uvicorn, this thread) and the workers until SIGTERM/SIGINT; then stops all."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises the stopping signal after its shutdown, which would kill the process
        before the workers are stopped: here the signal only asks the server to exit."""

        @contextlib.contextmanager
        def capture_signals(self):
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

    config = uvicorn.Config(root.app, host=host, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=limits.NODE_SHUTDOWN_DEADLINE_S)
    server = Server(config)
    root.start_workers()
    try:
        server.run()
    finally:
        root.stop()
        log.info("node_stopped", workers=len(root.workers))


# ---------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="the node's TOML config (see api/node_root.py)")
    parser.add_argument("--host", help="default: [api] host, else 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: [api] port, else 8080")


def run(args) -> int:
    if sys.flags.optimize:
        print("custody node: refusing to run under python -O (asserts guard the books)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
        root = NodeRoot(cfg)
    except ConfigError as exc:
        print(f"custody node: {exc}", file=sys.stderr)
        return 2
    api = cfg.get("api", {})
    host = args.host or api.get("host", "127.0.0.1")
    port = args.port if args.port is not None else api.get("port", 8080)
    log.info("node_starting", host=host, port=port, chains=",".join(root.chains), deposits=bool(root.deposits.chains))
    serve(root, host, port)
    return 0
