"""`custody signer --config FILE`: run one signer peer until SIGTERM.

    custody signer --config peer-1/signer.toml
    custody signer --config peer-1/signer.toml --export-backup VAULT --recovery-key HEX --out FILE

Refuses to start on a bad config, a wrong passphrase or a tampered data file (exit 2, saying why).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from node import limits
from node import log as nlog


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="the signer's TOML config")
    parser.add_argument("--export-backup", metavar="VAULT", help="write this vault's share, sealed to --recovery-key, and exit")
    parser.add_argument("--recovery-key", metavar="HEX", help="the operator's offline X25519 recovery public key (hex)")
    parser.add_argument("--out", metavar="FILE", help="where to write the backup")


def _fail(msg: str) -> int:
    print(f"custody signer: refusing to start: {msg}", file=sys.stderr)
    return 2


def open_state(cfg):
    """Policy, identity, sealed store, durable records: everything checked before the peer listens."""
    from mpc.signer.hygiene import check_at_start
    from mpc.signer.policy import Policy
    from mpc.signer.records import SignerRecords
    from mpc.signer.sealer import passphrase_sealer
    from mpc.signer.store import ShareStore
    from mpc.transport import tls

    check_at_start(cfg)  # data dir, TLS key, passphrase file: private (0600/0700) or no start
    policy = Policy.load(cfg.policy_file)
    identity = tls.Identity(cfg.name, cfg.tls_cert.read_bytes(), cfg.tls_key.read_bytes())
    if tls.cert_name(identity.cert_pem) != cfg.name:
        raise ValueError(f"{cfg.tls_cert} names {tls.cert_name(identity.cert_pem)!r}, not {cfg.name!r}")
    sealer = passphrase_sealer(cfg.key_id, cfg.passphrase.reveal(), cfg.environment)
    store = ShareStore(cfg.data_dir, sealer, cfg.key_id, cfg.name)
    store.open()
    records = SignerRecords.open(cfg.data_dir, sealer, cfg.name)  # verified and replayed, or RecordsError
    return policy, identity, store, sealer, records


def participant_class_of(cfg):
    """Participant, or a test-only subclass a test config names (`[test] participant =
    "module:Class"`: a rogue peer for the adversarial tests; refused outside environment =
    "test" by config.py)."""
    import importlib

    from mpc.signer.participant import Participant

    ref = cfg.test.get("participant") if cfg.is_test else None
    if not ref:
        return Participant
    module, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Participant)):
        raise ValueError(f"[test] participant {ref} is not a Participant")
    return cls


def run(args) -> int:
    from mpc.signer import checkers as chk
    from mpc.signer import config as conf
    from mpc.signer.policy import PolicyError
    from mpc.signer.preparams import PreParamsSource
    from mpc.signer.records import RecordsError
    from mpc.signer.sealer import SealError
    from mpc.signer.store import StoreError

    try:
        cfg = conf.load(args.config)
        policy, identity, store, sealer, records = open_state(cfg)
    except (conf.ConfigError, PolicyError, StoreError, SealError, RecordsError, OSError, ValueError) as exc:
        return _fail(str(exc))
    log = nlog.get("mpc.signer", peer=cfg.name)
    for w in policy.warnings:
        log.warning("policy_key_ignored", detail=w)
    if args.export_backup:
        from mpc.signer.backup import export_backup

        if not args.recovery_key or not args.out:
            return _fail("--export-backup needs --recovery-key and --out")
        try:
            export_backup(store, args.export_backup, bytes.fromhex(args.recovery_key), args.out)
        except (KeyError, ValueError) as exc:
            return _fail(f"backup: {exc}")
        log.info("backup_exported", vault=args.export_backup, out=args.out)
        return 0

    from mpc.signer import metrics, server as grpc_server
    from mpc.signer.peer import SignerPeer

    try:
        checkers = chk.load(cfg.test.get("intent_checkers", ()))
        participant_class = participant_class_of(cfg)
        preparams = PreParamsSource(cfg, sealer)
    except (ImportError, AttributeError, ValueError, OSError) as exc:
        return _fail(str(exc))
    peer = SignerPeer(cfg, identity, policy, store, records, checkers, preparams, participant_class)
    try:
        server = grpc_server.serve(peer)
        http = metrics.serve(cfg.metrics_listen, peer.metrics, peer.health)
    except OSError as exc:
        return _fail(str(exc))
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    peer.ready = True
    log.info("ready", listen=cfg.listen, metrics=cfg.metrics_listen, environment=cfg.environment,
             vaults=json.dumps(store.vault_ids()), checkers=",".join(sorted(checkers)))
    # The process's own clock: a ceremony joined but never started is aborted within a sweep
    # of its start deadline, whether or not anyone calls (health reads change nothing).
    while not stop.wait(limits.CLUSTER_START_SWEEP_MS / 1000):
        peer.participant.expire_unstarted()
    log.info("stopping")
    peer.ready = False
    server.stop(grace=2).wait(5)
    http.shutdown()
    preparams.stop()
    peer.mesh.close()
    return 0
