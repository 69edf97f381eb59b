"""`custody api serve`: runs the custody API (uvicorn) with settings from CUSTODY_API_* variables.
`custody api keypair --out PATH`: makes an Ed25519 key pair for an API key; prints the public key
to register (the private key stays in PATH, mode 0600).
`custody api secrets-key --out PATH`: makes the key that seals webhook secrets and stored
idempotent responses at rest (CUSTODY_API_SECRETS_KEY_FILE; 32 random bytes, mode 0600)."""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="api_command", metavar="ACTION", required=True)
    serve = sub.add_parser("serve", help="run the API server (settings: CUSTODY_API_* environment variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    kp = sub.add_parser("keypair", help="generate an Ed25519 key pair for an API key")
    kp.add_argument("--out", required=True, help="where to write the private key (PEM, 0600; never overwritten)")
    sk = sub.add_parser("secrets-key", help="generate the key sealing webhook secrets and stored responses at rest")
    sk.add_argument("--out", required=True, help="where to write it (0600; never overwritten)")


def run(args) -> int:
    if args.api_command == "secrets-key":
        from node.secretbox import write_new_key

        try:
            write_new_key(args.out)
        except OSError as exc:
            print(f"custody api secrets-key: {args.out}: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    if args.api_command == "keypair":
        from api.client import generate_private_key, public_key_b64, write_private_key

        key = generate_private_key()
        try:
            write_private_key(args.out, key)
        except FileExistsError as exc:
            print(f"custody api keypair: {exc}", file=sys.stderr)
            return 1
        print(public_key_b64(key))
        return 0

    import uvicorn
    from pydantic import ValidationError

    from api.app import create_app
    from api.settings import ApiSettings

    try:
        settings = ApiSettings()
    except ValidationError as exc:
        print(f"custody api serve: bad settings (CUSTODY_API_*):\n{exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        limit_concurrency=1000,
    )
    return 0
