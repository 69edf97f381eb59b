"""Proof of reserves wired into the node: the snapshot job built from the node's TOML config
(the withdrawal worker's, api/withdrawals_root.py, plus a [reserves] section).

    [reserves]
    store_dir = "/var/lib/custody/reserves"       # SnapshotStore: history, trees, proof secrets
    node_id = "node-1"                            # bound into the sealed key's associated data
    snapshot_key_file = "/etc/custody/por-key.sealed"
    passphrase_file = "/etc/custody/por-key.passphrase"  # unseals it (argon2id); no default
    interval_s = 3600                             # >= POR_SNAPSHOT_INTERVAL_S_MIN
    assets = [{ code = "BTC", chain = "bitcoin", decimals = 8 },
              { code = "ETH", chain = "ethereum", decimals = 18 }]

The snapshot key is an Ed25519 key born by `custody reserves init-key --config F`, kept only
sealed (AES-256-GCM under a key derived from the passphrase file with argon2id; a KMS key
provider fits the same Sealer) and opened in memory by the job. There is no default key, no
default passphrase and no unsealed copy: a node without them takes no snapshot.

`custody reserves snapshot --config F` takes one snapshot if due (`--every-s N`: keeps running,
one tick every N seconds, until SIGTERM). The node's worker loop calls `build_job(world, cfg)`'s
`tick()` on its timer the same way.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys

from node import limits
from node.log import get as get_log

log = get_log("api.reserves")
KEY_ID_SUFFIX = "/por-snapshot-key"


class ReservesConfigError(ValueError):
    pass


def reserves_section(cfg: dict) -> dict:
    r = cfg.get("reserves")
    if not isinstance(r, dict):
        raise ReservesConfigError("config: missing [reserves] section")
    for key in ("store_dir", "node_id", "snapshot_key_file", "passphrase_file", "interval_s", "assets"):
        if key not in r:
            raise ReservesConfigError(f"config [reserves]: missing {key} (no defaults for these)")
    if not isinstance(r["interval_s"], int) or r["interval_s"] < limits.POR_SNAPSHOT_INTERVAL_S_MIN:
        raise ReservesConfigError(f"config [reserves]: interval_s must be an integer >= {limits.POR_SNAPSHOT_INTERVAL_S_MIN}")
    if not isinstance(r["assets"], list) or not 1 <= len(r["assets"]) <= limits.POR_ASSETS_MAX:
        raise ReservesConfigError(f"config [reserves]: assets must list 1..{limits.POR_ASSETS_MAX} assets")
    return r


def _assets(r: dict):
    from node.ports import ReservesAsset

    out = []
    for a in r["assets"]:
        try:
            out.append(ReservesAsset(str(a["code"]), str(a["chain"]), int(a["decimals"])))
        except (KeyError, TypeError, ValueError):
            raise ReservesConfigError(f"config [reserves]: asset {a!r} needs code, chain and decimals") from None
        if out[-1].chain not in ("bitcoin", "ethereum"):
            raise ReservesConfigError(f"config [reserves]: unknown chain {out[-1].chain!r}")
    return tuple(out)


def sealer(r: dict):
    from mpc.sealing import PassphraseKeyProvider, Sealer

    try:
        passphrase = pathlib.Path(r["passphrase_file"]).read_text().strip()
    except OSError as exc:
        raise ReservesConfigError(f"passphrase_file: {exc.strerror}") from None
    try:
        # "production" in every environment: the snapshot key has no test mode to be kept from,
        # and a key sealed before the environment binding opens only as "production".
        return Sealer(PassphraseKeyProvider(passphrase, key_id=r["node_id"] + KEY_ID_SUFFIX), environment="production")
    except ValueError as exc:
        raise ReservesConfigError(f"passphrase_file: {exc}") from None


def init_key(r: dict) -> str:
    """Creates the sealed snapshot key file (refuses to overwrite one); returns the public key."""
    from proofs.snapshot_key import new_sealed_key

    path = pathlib.Path(r["snapshot_key_file"])
    if path.exists():
        raise ReservesConfigError(f"{path} exists: a snapshot key is never replaced silently")
    blob, public = new_sealed_key(sealer(r), r["node_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.chmod(0o600)
    tmp.rename(path)
    return public


def open_key(r: dict):
    from mpc.sealing import SealingError
    from proofs.snapshot_key import open_sealed_key

    try:
        blob = pathlib.Path(r["snapshot_key_file"]).read_bytes()
    except OSError as exc:
        raise ReservesConfigError(f"snapshot_key_file: {exc.strerror} (create it with `custody reserves init-key`)") from None
    try:
        return open_sealed_key(blob, sealer(r), r["node_id"])
    except (SealingError, ValueError) as exc:
        raise ReservesConfigError(f"snapshot_key_file does not open: {type(exc).__name__}: {exc}") from None


def build_job(world, cfg: dict):
    """The SnapshotJob over a withdrawals_root.World (store, ledger, adapters, cluster)."""
    from chains.reserves import ChainReserves
    from mpc.client import ClusterReservesSigner
    from node.customers import Customers
    from proofs.job import SnapshotJob
    from proofs.liabilities import LedgerLiabilities
    from proofs.snapshot import SnapshotStore

    r = reserves_section(cfg)
    assets = _assets(r)
    missing = {a.chain for a in assets} - set(world.chains)
    if missing:
        raise ReservesConfigError(f"config [reserves]: assets on {sorted(missing)} but no such chain section")
    reserves = ChainReserves({c: world.chains[c] for c in sorted({a.chain for a in assets})}, {a.code for a in assets})
    vaults = {vid: vault for vid, (vault, _kind) in world.withdrawals.vaults().items()}
    liabilities = LedgerLiabilities(Customers(world.ledger), assets, reserves.heights)
    return SnapshotJob(liabilities, reserves, ClusterReservesSigner(world.cluster, vaults),
                       SnapshotStore(r["store_dir"]), open_key(r), interval_s=r["interval_s"], engine=world.store.engine)


def snapshot_refusals() -> tuple[type[Exception], ...]:
    """What a snapshot tick may refuse with, nothing stored (no accounts yet, a chain not
    scanned to the snapshot height or reorged, the cluster refusing): expected, not bugs."""
    from chains.errors import ChainError
    from node.ports import SigningRefused
    from proofs.tree import SnapshotRefused

    return (SnapshotRefused, ChainError, SigningRefused)


def run_snapshot(config_path: str, every_s: int) -> int:
    from api.withdrawals_root import ConfigError, World, load_config

    if every_s and every_s < 1:
        print("custody reserves: --every-s must be positive", file=sys.stderr)
        return 2
    try:
        cfg = load_config(config_path)
        reserves_section(cfg)
        world = World(cfg)
    except (ConfigError, ReservesConfigError) as exc:
        print(f"custody reserves: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            job = build_job(world, cfg)
        except ReservesConfigError as exc:
            print(f"custody reserves: {exc}", file=sys.stderr)
            return 2
        stop = _stop_event() if every_s else None
        while True:
            try:
                world.scan()
                published = job.tick()
                if published is not None:
                    h = published.signed_header["header"]
                    print(json.dumps({"seq": published.seq, "snapshot_id": published.snapshot_id,
                                      "created_at": h["created_at"], "public_key": published.signed_header["signature"]["public_key"],
                                      "addresses": len(published.assets_doc["addresses"])}), flush=True)
                elif not every_s:
                    print(json.dumps({"snapshot": "not_due"}), flush=True)
            except snapshot_refusals() as exc:
                log.warning("snapshot_failed", error=str(exc))
                print(f"custody reserves: snapshot refused: {exc}", file=sys.stderr)
                if not every_s:
                    return 1
            if not every_s or stop.wait(every_s):
                return 0
    finally:
        world.close()


def _stop_event():
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def run_init_key(config_path: str) -> int:
    from api.withdrawals_root import ConfigError, load_config

    try:
        r = reserves_section(load_config(config_path))
        public = init_key(r)
    except (ConfigError, ReservesConfigError) as exc:
        print(f"custody reserves: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"public_key": public, "snapshot_key_file": r["snapshot_key_file"]}))
    return 0
