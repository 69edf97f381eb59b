"""Shared options of the `custody` commands that talk to the API through api.client, and
`custody balances SUB_ACCOUNT`.

Connection: --api-url / --key-id / --private-key, or CUSTODY_API_URL, CUSTODY_API_KEY_ID,
CUSTODY_API_PRIVATE_KEY (a PEM file)."""

from __future__ import annotations

import json
import os
import sys


class ConfigError(Exception):
    pass


def add_connection_arguments(p) -> None:
    p.add_argument("--api-url", help="default: CUSTODY_API_URL")
    p.add_argument("--key-id", help="default: CUSTODY_API_KEY_ID")
    p.add_argument("--private-key", help="PEM file; default: CUSTODY_API_PRIVATE_KEY")
    p.add_argument("--timeout-s", type=float, default=30.0)


def client_from_args(args):
    from api.client import CustodyClient, load_private_key

    url = args.api_url or os.environ.get("CUSTODY_API_URL")
    key_id = args.key_id or os.environ.get("CUSTODY_API_KEY_ID")
    key_path = args.private_key or os.environ.get("CUSTODY_API_PRIVATE_KEY")
    missing = [n for n, v in (("--api-url", url), ("--key-id", key_id), ("--private-key", key_path)) if not v]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or the CUSTODY_API_* variables)")
    try:
        key = load_private_key(key_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the private key: {exc}") from None
    return CustodyClient(url, key_id, key, timeout_s=args.timeout_s)


# --- custody balances ------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("sub_account", help="sub-account id, e.g. acme.main")
    add_connection_arguments(parser)


def run(args) -> int:
    from api.client import ApiError

    try:
        with client_from_args(args) as c:
            out = c.balances(args.sub_account)
    except ConfigError as exc:
        print(f"custody balances: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"custody balances: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0
