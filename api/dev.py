"""`custody dev up`: the local system on development defaults (what `make run` starts).

Today it runs the node's custody API over a SQLite store in `.data/dev/` with the webhook
worker, and on first start creates an admin API key whose private key is written to
`.data/dev/admin.pem` (mode 0600; it never enters the database). It prints the API URL, the key
and the environment lines for the `custody` CLI. The signer cluster, btcd and Anvil join this
command as their areas land; it says so rather than pretending.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="run the local system in the foreground (Ctrl-C stops it)")
    up.add_argument("--data-dir", default=".data/dev")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)


def _first_key(data_dir: pathlib.Path, engine) -> dict:
    from api.client import generate_private_key, public_key_b64, write_private_key
    from api.signing import b64url_decode
    from node import apikeys

    info_path = data_dir / "admin.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if apikeys.get_api_key(engine, info["id"]) is not None:
            return info
    pem = data_dir / "admin.pem"
    if pem.exists():
        pem.unlink()  # its key is not in this database (a fresh data dir): make a new pair
    key = generate_private_key()
    write_private_key(pem, key)
    k = apikeys.create_api_key(
        engine, client_id=None, name="dev-admin", scopes=list(apikeys.SCOPES), public_key=b64url_decode(public_key_b64(key))
    )
    info = {"id": k.id, "client_id": k.client_id, "private_key": str(pem.resolve())}
    info_path.write_text(json.dumps(info))
    return info


def run(args) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from node.store import open_store

    data_dir = pathlib.Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(data_dir / 'node.db').resolve()}"
    store = open_store(url)
    info = _first_key(data_dir, store.engine)
    settings = ApiSettings(
        database_url=url, environment="development", webhook_worker=True, webhook_allow_insecure_urls=True
    )
    api_url = f"http://{args.host}:{args.port}"
    print(
        f"""
custody dev: the node's API is starting.

  API            {api_url}   (OpenAPI: {api_url}/openapi.json)
  admin API key  {info['id']}  (all scopes)
  private key    {info['private_key']}
  database       {url}

  export CUSTODY_API_URL={api_url} CUSTODY_API_KEY_ID={info['id']} CUSTODY_API_PRIVATE_KEY={info['private_key']}
  .venv/bin/custody balances <sub-account>

  Not started yet by this command: the signer cluster, btcd and Anvil (their areas are
  being merged); deposits and withdrawals arrive with them.
""",
        file=sys.stderr,
        flush=True,
    )
    os.environ.setdefault("CUSTODY_LOG_LEVEL", "info")
    uvicorn.run(create_app(settings, store=store), host=args.host, port=args.port, log_level="warning")
    return 0
