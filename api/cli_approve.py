"""`custody approve --withdrawal ID --approver-id A --key-file K [--reject]`

An approver signs the withdrawal's canonical intent (RFC 8785 bytes of node.ports.
WithdrawalIntent) with their own Ed25519 key, here on their machine; only the signature goes
to the node, which verifies it against the active policy's approver keys (and each signer peer
verifies it again against its own policy). The intent is printed first: what is approved is
exactly what is shown. An approval is timed: the approver's clock (Unix ms) is signed with the
intent (node/ports.py `approval_message`), which is what a cold vault's delay counts from at
the node and at every signer peer; a rejection is not timed.

Two ways to reach the node:
- through the custody API (default): GET /v1/approvals/ID gives the intent; this command
  re-canonicalises the intent JSON itself and refuses to sign if the node's bytes differ, then
  POSTs the signature (connection: --api-url/--key-id/--private-key or CUSTODY_API_*; the API
  key needs the `approve` scope);
- offline on the node's database (`--config F`, the node's or the withdrawal worker's config).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import rfc8785
from nacl.signing import SigningKey

from api.cli_client import ConfigError as ClientConfigError
from api.cli_client import add_connection_arguments, client_from_args


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="offline: the node's config (its database) instead of the API")
    parser.add_argument("--withdrawal", required=True)
    parser.add_argument("--approver-id", required=True)
    parser.add_argument("--key-file", required=True, help="hex Ed25519 seed of this approver (never leaves this machine)")
    parser.add_argument("--reject", action="store_true", help="sign a rejection instead")
    add_connection_arguments(parser)


def _key(path) -> SigningKey:
    return SigningKey(bytes.fromhex(pathlib.Path(path).read_text().strip()))


def run(args) -> int:
    decision = "reject" if args.reject else "approve"
    try:
        key = _key(args.key_file)
    except (OSError, ValueError) as exc:
        print(f"custody approve: {exc}", file=sys.stderr)
        return 2
    if args.config:
        return _offline(args, key, decision)
    return _through_api(args, key, decision)


def _through_api(args, key: SigningKey, decision: str) -> int:
    from api.client import ApiError
    from node.withdrawals import approval_message, intent_from_json

    try:
        with client_from_args(args) as c:
            item = c.approval(args.withdrawal)
            intent_bytes = item["intent_canonical"].encode()
            intent = intent_from_json(item["intent_canonical"])
            if rfc8785.dumps(item["intent"]) != intent_bytes or intent.canonical_bytes() != intent_bytes:
                print("custody approve: the node's bytes to sign differ from its intent; refusing to sign", file=sys.stderr)
                return 1
            print(json.dumps({"approving" if decision == "approve" else "rejecting": item["intent"]}), file=sys.stderr)
            at_ms = time.time_ns() // 1_000_000 if decision == "approve" else None
            signature = key.sign(approval_message(intent, decision, at_ms)).signature.hex()
            if decision == "approve":
                out = c.approve(args.withdrawal, args.approver_id, signature, approved_at_ms=at_ms)
            else:
                out = c.reject(args.withdrawal, args.approver_id, signature)
    except ClientConfigError as exc:
        print(f"custody approve: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"custody approve: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out["withdrawal"]))
    return 0


def _offline(args, key: SigningKey, decision: str) -> int:
    from api.withdrawals_root import ConfigError, load_config
    from node.client_withdrawals import evented_ledger
    from node.store import open_store
    from node.withdrawals import WithdrawalError, Withdrawals, approval_message

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"custody approve: {exc}", file=sys.stderr)
        return 2
    store = open_store(cfg["database_url"], schema=cfg.get("database_schema"))
    try:
        w = Withdrawals(evented_ledger(store), {})
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
