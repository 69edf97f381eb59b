"""`custody apikey create`: registers an API key.

Bootstrap (no key exists yet): directly on the node's database, as the operator on the node's
host:  custody apikey create --database-url URL --name ops --scopes admin,read --private-key-out k.pem
Afterwards, through the API with an admin key (CUSTODY_API_URL, CUSTODY_API_KEY_ID,
CUSTODY_API_PRIVATE_KEY):  custody apikey create --name backoffice --scopes read,withdraw --public-key B64

Either the owner gives `--public-key` (their private key never leaves them) or the command
generates a pair locally and writes the private key to `--private-key-out` (mode 0600)."""

from __future__ import annotations

import json
import sys

from api import cli_client


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="register an API key")
    c.add_argument("--name", required=True)
    c.add_argument("--scopes", required=True, help="comma-separated: read,deposit,withdraw,approve,admin")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--public-key", help="the owner's Ed25519 public key, unpadded base64url")
    g.add_argument("--private-key-out", help="generate a pair here and write the private key to this file")
    c.add_argument("--database-url", help="bootstrap: write the key straight into this database")
    c.add_argument("--database-schema", help="bootstrap on PostgreSQL: the schema holding the tables")
    c.add_argument("--client-id", help="bootstrap: the API client the key belongs to (default: a new client)")
    cli_client.add_connection_arguments(c)


def run(args) -> int:
    from api.client import ApiError, generate_private_key, public_key_b64, write_private_key
    from api.signing import b64url_decode

    scopes = [s for s in args.scopes.split(",") if s]
    if args.public_key:
        public_key = args.public_key
    else:
        key = generate_private_key()
        try:
            write_private_key(args.private_key_out, key)
        except FileExistsError as exc:
            print(f"custody apikey create: {exc}", file=sys.stderr)
            return 1
        public_key = public_key_b64(key)

    if args.database_url:
        from node import apikeys
        from node.store import open_store

        try:
            raw = b64url_decode(public_key)
        except ValueError:
            print("custody apikey create: --public-key is not unpadded base64url", file=sys.stderr)
            return 2
        store = open_store(args.database_url, schema=args.database_schema)
        try:
            k = apikeys.create_api_key(store.engine, client_id=args.client_id, name=args.name, scopes=scopes, public_key=raw)
        except apikeys.ApiKeyError as exc:
            print(f"custody apikey create: {exc}", file=sys.stderr)
            return 1
        finally:
            store.dispose()
        print(json.dumps({"id": k.id, "client_id": k.client_id, "scopes": sorted(k.scopes), "public_key": public_key}))
        return 0

    try:
        with cli_client.client_from_args(args) as c:
            out = c.create_api_key(args.name, scopes, public_key)
    except cli_client.ConfigError as exc:
        print(f"custody apikey create: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"custody apikey create: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0
