"""`custody withdrawals create|get|cancel` for operators, through the custody API as a client.

    custody withdrawals create acme.main BTC bcrt1q... 150000 --external-id payout-17
    custody withdrawals get wd_...            (or --external-id payout-17)
    custody withdrawals cancel wd_...

Connection: --api-url/--key-id/--private-key or CUSTODY_API_* (scope `withdraw` to create and
cancel, `read` to get). `create` sends an Idempotency-Key derived from the external_id, so a
re-run after a timeout can only meet the same withdrawal.
"""

from __future__ import annotations

import json
import sys

from api.cli_client import ConfigError, add_connection_arguments, client_from_args

CLIENT_ACTIONS = ("create", "get", "cancel")


def add_client_arguments(sub) -> None:
    c = sub.add_parser("create", help="create a withdrawal through the API")
    c.add_argument("sub_account")
    c.add_argument("asset")
    c.add_argument("destination")
    c.add_argument("amount", help="base units (satoshi, wei), an integer")
    c.add_argument("--external-id", required=True, help="your unique id for it, forever")
    add_connection_arguments(c)
    g = sub.add_parser("get", help="a withdrawal through the API, by id or --external-id")
    g.add_argument("id", nargs="?")
    g.add_argument("--external-id")
    add_connection_arguments(g)
    x = sub.add_parser("cancel", help="cancel a withdrawal through the API (before signing only)")
    x.add_argument("id")
    add_connection_arguments(x)


def run_client(args) -> int:
    from api.client import ApiError

    try:
        if args.action == "create":
            if not args.amount.isdigit() or int(args.amount) <= 0:
                raise ConfigError("amount must be a positive integer of base units")
        if args.action == "get" and (args.id is None) == (args.external_id is None):
            raise ConfigError("give a withdrawal id or --external-id")
        with client_from_args(args) as c:
            if args.action == "create":
                out = c.create_withdrawal(args.sub_account, args.external_id, args.asset, args.destination, int(args.amount),
                                          idempotency_key=f"cli-withdrawal-{args.external_id}"[:255])
            elif args.action == "get":
                out = c.withdrawal(args.id) if args.id else c.withdrawal_by_external_id(args.external_id)
                if out is None:
                    print(f"custody withdrawals: no withdrawal with external_id {args.external_id}", file=sys.stderr)
                    return 1
            else:
                out = c.cancel_withdrawal(args.id)
    except ConfigError as exc:
        print(f"custody withdrawals: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"custody withdrawals: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0
