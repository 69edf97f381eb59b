"""The withdrawal pipeline's composition root: the node's store, the chain adapters, the signer
cluster client, wired into node.pipeline.Pipeline from one TOML config.

    environment = "production"                 # or "test" (crash points allowed)
    database_url = "postgresql+psycopg://…"    # the node's store
    chain_state_url = "sqlite:///…/chains.db"  # the adapters' state (UTXOs, nonces, txs)
    cluster_file = "/etc/custody/cluster.json" # peers, node TLS identity and request key
    [confirmations]                            # depth at which a withdrawal completes
    bitcoin = 6
    ethereum = 12
    [bitcoin]                                  # chains.config.BitcoinSettings fields
    network = "regtest"
    rpc_url = "http://127.0.0.1:18334"
    rpc_user = "…"
    rpc_password_file = "/etc/custody/btc-rpc-password"
    [ethereum]                                 # chains.config.EthereumSettings fields
    chain_id = 1337
    rpc_url = "http://127.0.0.1:8545"
    [deposits]                                 # optional: customer deposits (node/deposits/)
    vault = "hot"                              # the vault whose children are deposit addresses
    first_index = 0                            # the first deposit address index (default 0)
    [deposits.sweep_min]                       # per asset, base units: sweep an address from here
    BTC = "100000"                             # (assets not listed are never swept automatically)

Commands: `custody withdrawals worker --config F` runs, each pass: scan the chains, credit
deposits (`Deposits.sync`), submit sweeps of deposit addresses, the pipeline (and the rebalancer
every `--rebalance-every-s`); `custody withdrawals reconcile --config F` prints the report;
`custody withdrawals show|review|queue` for staff; `custody withdrawals issue-address --config F
SUB ASSET` and `custody withdrawals deposits --config F SUB` for deposit addresses and deposits. `custody withdrawals create|get|cancel`
go through the custody API as a client (api/cli_withdrawals_client.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import tomllib

from node import limits
from node.log import get as get_log

log = get_log("api.withdrawals")


class ConfigError(ValueError):
    pass


def load_config(path) -> dict:
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    for key in ("environment", "database_url", "chain_state_url", "cluster_file", "confirmations"):
        if key not in cfg:
            raise ConfigError(f"config {path}: missing {key} (no defaults for these)")
    if cfg["environment"] not in ("production", "test"):
        raise ConfigError("environment must be production or test")
    return cfg


class World:
    """What a worker process holds: store, ledger, withdrawals, adapters, cluster, pipeline."""

    def __init__(self, cfg: dict, *, crash_at: str | None = None):
        from chains.state import make_engine
        from node.client_withdrawals import evented_ledger
        from node.store import open_store
        from node.withdrawals import Withdrawals

        if crash_at and cfg["environment"] != "test":
            raise ConfigError("crash points are for environment = test only")
        self.cfg = cfg
        self.store = open_store(cfg["database_url"], schema=cfg.get("database_schema"))
        self.ledger = evented_ledger(self.store)  # withdrawal.* webhook events in each status change's transaction
        self.chain_engine = make_engine(cfg["chain_state_url"])
        self.chains, networks = open_chains(cfg, self.chain_engine)
        self.withdrawals = Withdrawals(self.ledger, networks)
        self.cluster, self.pipeline = signing_pipeline(cfg, self.withdrawals, self.chains, crash_at=crash_at)
        self.deposits = None
        self.sweeper = None
        if "deposits" in cfg:
            self._deposits(cfg["deposits"])

    def _deposits(self, c: dict) -> None:
        from node.deposits import Deposits, Sweeper, family_of

        if not isinstance(c.get("vault"), str):
            raise ConfigError("deposits.vault: the vault of the deposit addresses (no default)")
        first = c.get("first_index", 0)
        if type(first) is not int or first < 0:
            raise ConfigError("deposits.first_index must be a non-negative integer")
        minimums = {}
        for asset, v in (c.get("sweep_min") or {}).items():
            try:
                family_of(asset)
                minimums[asset] = int(v)
            except Exception:  # noqa: BLE001 - any bad entry is a configuration error
                raise ConfigError(f"deposits.sweep_min.{asset}: an asset and a positive integer in base units") from None
            if minimums[asset] <= 0 or not isinstance(v, str):
                raise ConfigError(f"deposits.sweep_min.{asset}: a positive integer as a string, in base units")
        self.deposits = Deposits(self.ledger, self.chains, vault_id=c["vault"], first_index=first)
        self.sweeper = Sweeper(self.deposits, self.withdrawals, minimums=minimums,
                               sweepable=lambda a, asset: sweepable(self.chains[a.chain], a, asset),
                               gas_missing=lambda a, asset: gas_missing(self.chains[a.chain], a, asset,
                                                                        self.vault_address(a.vault_id, asset)),
                               wallet_address=self.vault_address)

    def sync_deposits(self) -> int:
        """Books what each adapter's observation log holds after the node's cursor (after
        `scan()`), in bounded batches (node.deposits.Deposits.sync). Returns how many changes
        were booked."""
        if self.deposits is None:
            return 0
        return sum(self.deposits.sync(a).total for a in self.chains.values())

    def sweep(self) -> int:
        return len(self.sweeper.run_once()) if self.sweeper is not None else 0

    def balance(self, asset: str, vault_id: str) -> int:
        """On-chain holdings of `asset` at every address of `vault_id` we know (after a scan)."""
        from node.withdrawals import chain_of

        a = self.chains[chain_of(asset)]
        if a.chain == "bitcoin":
            return a.balance(vault_id)
        with a.state.begin() as st:
            addrs = [addr for addr, (v, _p, _r) in st.addresses().items() if v == vault_id]
        return sum(a.balance(addr, asset) for addr in addrs)

    def vault_address(self, vault_id: str, asset: str) -> str:
        from node.withdrawals import VAULT_WALLET_PATH, chain_of

        return self.chains[chain_of(asset)].address(vault_id, VAULT_WALLET_PATH)

    def rebalancer(self):
        from node.rebalance import Rebalancer

        return Rebalancer(self.withdrawals, self.balance, self.vault_address)

    def scan(self) -> None:
        for a in self.chains.values():
            a.scan()

    def close(self) -> None:
        self.store.dispose()
        self.chain_engine.dispose()



def open_chains(cfg: dict, engine, wrap=lambda adapter: adapter) -> tuple[dict, dict[str, str]]:
    """The configured chain adapters (each passed through `wrap`) and their networks."""
    chains, networks = {}, {}
    for name, make in (("bitcoin", _bitcoin), ("ethereum", _ethereum)):
        if name in cfg:
            chains[name] = wrap(make(cfg[name], engine))
            networks[name] = chains[name].network
    return chains, networks


def signing_pipeline(cfg: dict, withdrawals, chains: dict, *, crash_at: str | None = None):
    """Registers every known vault's public keys with the adapters, then builds the cluster
    client and the pipeline over them. Returns (cluster, pipeline)."""
    from chains.keys import Bip32VaultKeys
    from mpc.client import ClusterClient
    from node.pipeline import Pipeline

    for vault, _kind in withdrawals.vaults().values():
        for a in chains.values():
            a.register_vault(vault.vault_id, Bip32VaultKeys(vault.public_key, vault.chain_code))
    cluster = ClusterClient.from_cluster_dir(json.loads(pathlib.Path(cfg["cluster_file"]).read_text()))
    pipeline = Pipeline(withdrawals, chains, cluster, dict(cfg["confirmations"]),
                        lambda chain, txid, wid: fee_of(chains[chain], txid, wid), crash_at=crash_at,
                        replacement_of=lambda chain, intent: replacement_of(chains[chain], intent))
    return cluster, pipeline


def _bitcoin(c: dict, engine):
    from chains.bitcoin.adapter import BitcoinAdapter
    from chains.bitcoin.rpc import BitcoinRpc
    from chains.state import ChainState
    from node.log import Secret

    password = pathlib.Path(c["rpc_password_file"]).read_text().strip()
    return BitcoinAdapter(BitcoinRpc(c["rpc_url"], c["rpc_user"], Secret(password)), ChainState(engine, f"bitcoin:{c['network']}"),
                          c["network"], confirmations=int(c.get("deposit_confirmations", 6)),
                          fee_rate_fallback_sat_vb=int(c.get("fee_rate_fallback_sat_vb", 10)), start_height=c.get("start_height"))


def _ethereum(c: dict, engine):
    from chains.ethereum.adapter import EthereumAdapter
    from chains.state import ChainState

    confirmations = {"ETH": int(c.get("deposit_confirmations", 12)), **{f"ERC20:{t}": int(c.get("deposit_confirmations", 12))
                                                                         for t in c.get("tokens", [])}}
    return EthereumAdapter.connect(c["rpc_url"], ChainState(engine, f"ethereum:{c['chain_id']}"), int(c["chain_id"]),
                                   confirmations=confirmations,
                                   max_fee_per_gas_fallback=int(c.get("max_fee_per_gas_fallback_wei", 100 * 10**9)),
                                   max_priority_fee_per_gas_fallback=int(c.get("max_priority_fee_per_gas_fallback_wei", 2 * 10**9)),
                                   start_height=c.get("start_height"))


def sweepable(adapter, address, asset: str) -> int:
    """What a sweep of everything of `asset` at the deposit address would pay the vault wallet,
    after its fee (0: nothing worth sweeping). Bitcoin: the address's spendable coins (the
    largest CHAINS_BTC_INPUTS_MAX) minus the fee at the adapter's rate, sized with a change
    output as the coin selection counts one (no change is then made: it would be dust). ETH: the
    balance minus twice the transfer's gas at today's max fee (the fee may move before the build;
    what is left stays booked in the deposit wallet). A token: its whole balance."""
    from node.withdrawals import VAULT_WALLET_PATH

    if adapter.chain == "bitcoin":
        from chains.bitcoin import tx as btx
        from chains.bitcoin.adapter import _clamp_fee_rate

        with adapter.state.begin() as st:
            tip = st.tip()
            if tip is None:
                return 0
            coins = [c for c in st.spendable_utxos(address.vault_id, tip[0], adapter.spend_confirmations_min,
                                                   limits.CHAINS_BTC_COINBASE_MATURITY_BLOCKS) if c.path == address.path]
        coins = sorted(coins, key=lambda u: (-u.amount, u.txid, u.vout))[: limits.CHAINS_BTC_INPUTS_MAX]
        if not coins:
            return 0
        script = btx.p2wpkh_script_pubkey(adapter.keys(address.vault_id).child_public_key(VAULT_WALLET_PATH))
        rate = _clamp_fee_rate(adapter.estimate_fee().fee_rate)
        amount = sum(c.amount for c in coins) - rate * btx.vsize_estimate(len(coins), [script, script])
        return amount if amount >= limits.CHAINS_BTC_DUST_SATS else 0
    from chains.ethereum.adapter import ETH_TRANSFER_GAS

    if asset == "ETH":
        fee = adapter.estimate_fee()
        return max(0, adapter.balance(address.address) - 2 * ETH_TRANSFER_GAS * fee.max_fee_per_gas)
    return adapter.balance(address.address, asset)


def gas_missing(adapter, address, asset: str, to_address: str) -> int:
    """Wei the deposit address lacks to pay for its token sweep: 0 when it holds enough (or for
    BTC and ETH, which pay from the amount); else twice the need minus what it holds (a margin:
    the base fee may rise between the top-up and the sweep)."""
    from chains.errors import ChainError

    if adapter.chain == "bitcoin" or asset == "ETH":
        return 0
    fee = adapter.estimate_fee()
    try:
        need = adapter.sweep_gas_needed(asset, fee, address.address, to_address)
    except ChainError as exc:
        if exc.reason == "nothing_to_sweep":
            return 0
        raise
    have = adapter.balance(address.address)
    return 0 if have >= need else 2 * need - have


def fee_of(adapter, txid: str, withdrawal_id: str) -> int:
    """The fee a mined transaction paid, in base units of its chain's fee asset. Bitcoin: the
    fee recorded when the adapter built it (inputs - outputs); Ethereum: gas used x effective
    gas price from the receipt."""
    if adapter.chain == "bitcoin":
        with adapter.state.begin() as st:
            for row in st.txs_of(withdrawal_id):
                if row.txid == txid:
                    return int(json.loads(row.meta)["fee"])
        raise LookupError(f"no recorded transaction {txid} for {withdrawal_id}")
    receipt = adapter.w3.eth.get_transaction_receipt(txid)
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def replacement_of(adapter, intent):
    """A fee-bumped replacement of the intent's latest transaction. Bitcoin: RBF at twice the
    last fee rate plus the relay minimum (BIP125 needs the new fee to pay for its own size on top
    of the old one); Ethereum: the same nonce with both fee caps raised by the adapter's default
    step. The adapter refuses (ChainError) past fee_max or without change to take the fee from."""
    from node import limits

    if adapter.chain == "bitcoin":
        with adapter.state.begin() as st:
            rows = st.txs_of(intent.intent_id)
        rate = int(json.loads(rows[-1].meta)["fee_rate_sat_vb"]) if rows else 0
        return adapter.bump_fee(intent, 2 * rate + limits.CHAINS_BTC_FEE_RATE_SAT_VB_MIN)
    return adapter.replace(intent)


# ---------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    w = sub.add_parser("worker", help="run the withdrawal pipeline")
    w.add_argument("--config", required=True)
    w.add_argument("--rebalance-every-s", type=int, default=0, help="run the rebalancer this often (0: never)")
    s = sub.add_parser("show", help="print one withdrawal as JSON")
    s.add_argument("--config", required=True)
    s.add_argument("id")
    r = sub.add_parser("review", help="staff: allow or deny a withdrawal held for review")
    r.add_argument("--config", required=True)
    r.add_argument("id")
    r.add_argument("decision", choices=("allow", "deny"))
    r.add_argument("--actor", required=True)
    q = sub.add_parser("queue", help="staff: the review queue")
    q.add_argument("--config", required=True)
    c = sub.add_parser("reconcile", help="ledger liabilities against on-chain holdings, per asset")
    c.add_argument("--config", required=True)
    i = sub.add_parser("issue-address", help="a fresh deposit address for a customer sub-account")
    i.add_argument("--config", required=True)
    i.add_argument("sub_account_id")
    i.add_argument("asset", help="BTC, ETH or ERC20:<contract>")
    i.add_argument("--actor", required=True)
    f = sub.add_parser("deposit-review", help="staff: credited deposits a reorg took out; decide one")
    f.add_argument("--config", required=True)
    f.add_argument("id", nargs="?", help="the deposit to decide (without: list the flagged ones)")
    f.add_argument("decision", nargs="?", choices=("reverse", "write_off", "keep"))
    f.add_argument("--actor")
    d = sub.add_parser("deposits", help="a sub-account's deposits as JSON lines (scans and credits first)")
    d.add_argument("--config", required=True)
    d.add_argument("sub_account_id")
    d.add_argument("--after-seq", type=int, default=0)
    d.add_argument("--limit", type=int, default=100)
    # Operators' client side, through the custody API (api/cli_withdrawals_client.py).
    from api.cli_withdrawals_client import add_client_arguments

    add_client_arguments(sub)


def run(args) -> int:
    if sys.flags.optimize:
        print("refusing to run under python -O: asserts guard the books", file=sys.stderr)
        return 2
    from api.cli_withdrawals_client import CLIENT_ACTIONS, run_client

    if args.action in CLIENT_ACTIONS:
        return run_client(args)
    try:
        cfg = load_config(args.config)
        world = World(cfg, crash_at=os.environ.get("CUSTODY_TEST_CRASH_AT") or None)
    except ConfigError as exc:
        print(f"custody withdrawals: {exc}", file=sys.stderr)
        return 2
    from node.deposits import DepositError
    from node.withdrawals import WithdrawalError

    try:
        if args.action in ("issue-address", "deposits", "deposit-review") and world.deposits is None:
            print("custody withdrawals: the config has no [deposits] section", file=sys.stderr)
            return 2
        if args.action == "issue-address":
            a = world.deposits.issue_address(args.sub_account_id, args.asset, actor=args.actor)
            print(json.dumps(a.public()))
            return 0
        if args.action == "deposit-review":
            if args.id is None:
                for dep in world.deposits.flagged():
                    print(json.dumps(dep.public()))
                return 0
            if args.decision is None or not args.actor:
                print("custody withdrawals: deposit-review ID needs a decision (reverse | write_off | keep) and --actor",
                      file=sys.stderr)
                return 2
            print(json.dumps(world.deposits.resolve_reversal(args.id, args.decision, actor=args.actor).public()))
            return 0
        if args.action == "deposits":
            world.scan()
            world.sync_deposits()
            for dep in world.deposits.list(args.sub_account_id, after_seq=args.after_seq, limit=args.limit):
                print(json.dumps({"seq": dep.seq, **dep.public()}))
            return 0
        if args.action == "worker":
            return _worker(world, args.rebalance_every_s)
        if args.action == "show":
            print(json.dumps(world.withdrawals.get(args.id).public()))
            return 0
        if args.action == "queue":
            for w in world.withdrawals.review_queue():
                print(json.dumps(w.public()))
            return 0
        if args.action == "review":
            print(json.dumps(world.withdrawals.review(args.id, args.decision, actor=args.actor).public()))
            return 0
        if args.action == "reconcile":
            from node.rebalance import reconciliation

            world.scan()
            report = reconciliation(world.withdrawals, world.balance)
            print(json.dumps(report, indent=2))
            return 0 if not any(r["alert"] for r in report) else 1
    except (WithdrawalError, DepositError) as exc:
        print(f"custody withdrawals: {exc}", file=sys.stderr)
        return 1
    finally:
        world.close()
    return 2


def _worker(world: World, rebalance_every_s: int) -> int:
    import threading
    import time

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("worker_started", chains=",".join(world.chains))
    last_rebalance = 0.0
    while not stop.is_set():
        try:
            world.scan()
            busy = world.sync_deposits()
            busy += world.sweep()
            busy += world.pipeline.run_once()
            if rebalance_every_s and time.monotonic() - last_rebalance >= rebalance_every_s:
                world.rebalancer().run_once()
                last_rebalance = time.monotonic()
        except Exception:  # noqa: BLE001 - a node or the database away: log and retry next pass
            log.exception("worker_pass_failed")
            busy = 0
        if not busy:
            stop.wait(limits.WITHDRAWAL_WORKER_POLL_S)
    return 0
