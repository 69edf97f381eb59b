"""`custody approve --config F --withdrawal ID --approver-id A --key-file K [--reject]`

An approver signs the withdrawal's canonical intent (RFC 8785 bytes of node.ports.
WithdrawalIntent) with their own Ed25519 key, here on their machine; only the signature goes
to the node, which verifies it against the active policy's approver keys (and each signer peer
verifies it again against its own policy). The intent is printed first: what is approved is
exactly what is shown. An approval is timed: the approver's clock (Unix ms) is signed with the
intent (node/ports.py `approval_message`), which is what a cold vault's delay counts from at
the node and at every signer peer; a rejection is not timed.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from nacl.signing import SigningKey


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="the withdrawal worker's config (its database)")
    parser.add_argument("--withdrawal", required=True)
    parser.add_argument("--approver-id", required=True)
    parser.add_argument("--key-file", required=True, help="hex Ed25519 seed of this approver (never leaves this machine)")
    parser.add_argument("--reject", action="store_true", help="sign a rejection instead")


def run(args) -> int:
    from api.withdrawals_root import ConfigError, load_config
    from node.ledger import Ledger
    from node.store import open_store
    from node.withdrawals import WithdrawalError, Withdrawals, approval_message

    try:
        cfg = load_config(args.config)
        key = SigningKey(bytes.fromhex(pathlib.Path(args.key_file).read_text().strip()))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"custody approve: {exc}", file=sys.stderr)
        return 2
    store = open_store(cfg["database_url"], schema=cfg.get("database_schema"))
    try:
        w = Withdrawals(Ledger(store), {})
        decision = "reject" if args.reject else "approve"
        try:
            intent = w.get(args.withdrawal).intent
            print(json.dumps({"approving" if decision == "approve" else "rejecting": intent.canonical()}), file=sys.stderr)
            at_ms = time.time_ns() // 1_000_000 if decision == "approve" else None
            signature = key.sign(approval_message(intent, decision, at_ms)).signature
            out = w.approve(args.withdrawal, args.approver_id, signature, decision, approved_at_ms=at_ms)
        except WithdrawalError as exc:
            print(f"custody approve: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(out.public()))
        return 0
    finally:
        store.dispose()
