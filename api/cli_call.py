"""`custody call METHOD PATH [JSON]`: one signed request to the custody API, its JSON answer
on stdout — what `curl` would be if it could sign (the walkthrough's and an operator's tool).

    custody call GET /v1/whoami
    custody call POST /v1/customers '{"id": "acme", "name": "Acme Ltd"}' --idempotency-key c-acme-1

Connection as every API command: --api-url / --key-id / --private-key or CUSTODY_API_URL,
CUSTODY_API_KEY_ID, CUSTODY_API_PRIVATE_KEY. PATH keeps its query string exactly as given (it
is signed as sent). Exit 0 on 2xx; 1 with the problem document on stderr otherwise; 2 on bad
arguments (nothing is sent).
"""

from __future__ import annotations

import json
import sys

from api.cli_client import ConfigError, add_connection_arguments, client_from_args

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def add_arguments(parser) -> None:
    parser.add_argument("method", type=str.upper, choices=METHODS)
    parser.add_argument("path", help="e.g. /v1/sub-accounts/acme.main/balances (query string included)")
    parser.add_argument("body", nargs="?", help="a JSON object (POST/PUT/PATCH)")
    parser.add_argument("--idempotency-key", help="Idempotency-Key header (POST)")
    add_connection_arguments(parser)


def run(args) -> int:
    from api.client import ApiError

    if not args.path.startswith("/"):
        print("custody call: PATH must start with / (e.g. /v1/whoami)", file=sys.stderr)
        return 2
    body = None
    if args.body is not None:
        try:
            body = json.loads(args.body)
        except ValueError as exc:
            print(f"custody call: the body is not JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(body, dict):
            print("custody call: the body must be a JSON object", file=sys.stderr)
            return 2
    elif args.method in ("POST", "PUT", "PATCH"):
        body = {}
    try:
        with client_from_args(args) as c:
            out = c.request(args.method, args.path, body, idempotency_key=args.idempotency_key)
    except ConfigError as exc:
        print(f"custody call: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(json.dumps(exc.problem, indent=2), file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0
