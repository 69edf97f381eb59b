"""`custody whitelist add|list|remove SUB_ACCOUNT ...` through the custody API.

    custody whitelist add acme.main BTC bcrt1q...      usable after the policy's time-lock
    custody whitelist list acme.main
    custody whitelist remove acme.main BTC bcrt1q...

Connection: --api-url/--key-id/--private-key or CUSTODY_API_* (scope `withdraw` to change,
`read` to list)."""

from __future__ import annotations

import json
import sys

from api.cli_client import ConfigError, add_connection_arguments, client_from_args


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_ in (("add", "whitelist an address"), ("remove", "remove a whitelisted address")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("sub_account")
        p.add_argument("asset")
        p.add_argument("address")
        add_connection_arguments(p)
    p = sub.add_parser("list", help="a sub-account's whitelist")
    p.add_argument("sub_account")
    add_connection_arguments(p)


def run(args) -> int:
    from api.client import ApiError

    try:
        with client_from_args(args) as c:
            if args.action == "add":
                out = c.whitelist_add(args.sub_account, args.asset, args.address)
            elif args.action == "remove":
                out = c.whitelist_remove(args.sub_account, args.asset, args.address)
            else:
                out = c.whitelist(args.sub_account)
    except ConfigError as exc:
        print(f"custody whitelist: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"custody whitelist: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0
