"""The node's chain workers inside `custody dev up`, until the node process (`custody node
--config`, branch nodeapi) takes them over: every DEV_WORKER_POLL_S the dev chains are scanned,
deposits are credited (`node.deposits.Deposits.sync`, which writes the webhook events) and the
withdrawal pipeline takes its next steps — the same domain code, wired from `node.toml` by the
withdrawals composition root (`api.withdrawals_root.World`).

`prepare(data_dir, hot)` makes the store ready for them on every start: the BTC and ETH ledgers
and the hot vault registered (its public part only: group key, chain code, committee).
`custody dev deposit-address SUB_ACCOUNT ASSET` issues a deposit address of the hot vault for a
sub-account (the API route comes with the node process).
"""

from __future__ import annotations

import json
import pathlib
import threading

import node.log
from node import limits

log = node.log.get("api.dev_node")

DEV_ASSETS = (("BTC", 8), ("ETH", 18))
HOT_VAULT_ID = "hot"


def _world(data_dir: pathlib.Path):
    from api.withdrawals_root import World, load_config

    return World(load_config(pathlib.Path(data_dir) / "node.toml"))


def forget_btc_chain_state(data_dir: pathlib.Path) -> None:
    """After btcd started a new regtest chain: the node's stored view of the old one (blocks,
    deposits, UTXOs, transactions of "bitcoin:regtest") is dropped, so the adapter rescans the
    new chain from its genesis. The watched addresses and their counters stay (they derive from
    the keys, valid on any chain). The books are left alone: deposits credited on the old chain
    meet a deep reorg (flagged for staff by node.deposits, the customer never debited silently)."""
    import sqlalchemy as sa

    from chains import state as chain_state

    path = pathlib.Path(data_dir) / "chains.db"
    if not path.exists():
        return
    engine = chain_state.make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            for table in chain_state.metadata.sorted_tables:
                if table.name in ("chains_addresses", "chains_counters") or "chain_id" not in table.c:
                    continue
                conn.execute(sa.delete(table).where(table.c.chain_id == "bitcoin:regtest"))
    finally:
        engine.dispose()
    log.warning("dev_btc_chain_state_reset", note="btcd started a new regtest chain; rescanning it")


def prepare(data_dir: pathlib.Path, hot: dict) -> None:
    """Idempotent: ledgers for the dev chains' assets and the hot vault in the node's store."""
    from node.ledger import Ledger, LedgerKind
    from node.ports import Vault
    from node.store import open_store
    from node.withdrawals import Withdrawals

    store = open_store(f"sqlite:///{pathlib.Path(data_dir) / 'node.db'}")
    try:
        ledger = Ledger(store)
        for asset, scale in DEV_ASSETS:
            ledger.create_ledger(asset, scale, LedgerKind.CRYPTO, actor="dev")
        vault = Vault(hot["vault_id"], tuple(hot["committee"]), hot["threshold"], bytes.fromhex(hot["public_key"]),
                      bytes.fromhex(hot["chain_code"]))
        Withdrawals(ledger, {"bitcoin": "regtest", "ethereum": "1337"}).register_vault(vault, "hot", actor="dev")
    finally:
        store.dispose()


class DevWorkers:
    """One thread: scan, credit deposits, run the withdrawal pipeline; every pass bounded by the
    adapters' and the store's own timeouts; a failed pass is logged and the next one retries."""

    def __init__(self, data_dir: pathlib.Path):
        self.data_dir = pathlib.Path(data_dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._addresses_seen_seq = 0
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dev-node-workers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=limits.DEV_CHAIN_STOP_DEADLINE_S)

    def _watch_new_addresses(self, world) -> None:
        """Deposit addresses issued by another process (`custody dev deposit-address`) are
        registered with this process's adapters too, so their scans see them (each adapter
        caches the addresses it watches). Idempotent; only rows not seen yet."""
        import sqlalchemy as sa

        from node.deposits import DEPOSIT_BRANCH
        from node.store.deposit_models import deposit_addresses as da

        with world.store.reading() as conn:
            rows = conn.execute(sa.select(da.c.seq, da.c.chain, da.c.vault_id, da.c.path_index)
                                .where(da.c.seq > self._addresses_seen_seq).order_by(da.c.seq)
                                .limit(limits.DEV_WORKER_ADDRESSES_PER_PASS_MAX)).all()
        for r in rows:
            adapter = world.chains.get(r.chain)
            if adapter is not None:
                adapter.address(r.vault_id, (DEPOSIT_BRANCH, int(r.path_index)))
            self._addresses_seen_seq = r.seq

    def _run(self) -> None:
        from node.deposits import Deposits

        world = None
        try:
            while not self._stop.is_set():
                try:
                    if world is None:
                        world = _world(self.data_dir)
                    self._watch_new_addresses(world)
                    world.scan()
                    deposits = Deposits(world.ledger, world.chains, vault_id=HOT_VAULT_ID)
                    for adapter in world.chains.values():
                        report = deposits.sync(adapter)
                        if report.total:
                            log.info("deposits_synced", chain=adapter.chain, pending=report.pending,
                                     credited=report.credited, voided=report.voided, flagged=report.flagged)
                    world.pipeline.run_once()
                    self.passes += 1
                except Exception:  # noqa: BLE001 - a chain or the database away: log, next pass
                    log.exception("dev_workers_pass_failed")
                self._stop.wait(limits.DEV_WORKER_POLL_S)
        finally:
            if world is not None:
                world.close()


def issue_deposit_address(data_dir: pathlib.Path, sub_account_id: str, asset: str) -> dict:
    """A deposit address of the hot vault for the sub-account (events go to the dev admin key's
    client, whose webhooks the walkthrough registers)."""
    from node.deposits import Deposits

    info = json.loads((pathlib.Path(data_dir) / "admin.json").read_text())
    world = _world(data_dir)
    try:
        deposits = Deposits(world.ledger, world.chains, vault_id=HOT_VAULT_ID)
        return deposits.issue_address(sub_account_id, asset, client_id=info["client_id"], actor="dev").public()
    finally:
        world.close()
