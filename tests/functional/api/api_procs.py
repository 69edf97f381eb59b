"""Real processes for the API tests: the API server (`custody api serve`) and the webhook
receiver, each started with its own log files and polled until ready."""

from __future__ import annotations

import json
import pathlib
import sys

import httpx

from tests.support.procs import Proc, free_port
from tests.support.secrets_key import secrets_key_file

HERE = pathlib.Path(__file__).resolve().parent
VENV_BIN = pathlib.Path(sys.executable).parent


def custody_cli() -> str:
    exe = VENV_BIN / "custody"
    assert exe.exists(), f"{exe} missing: install the package (deploy/dev/tools.sh python)"
    return str(exe)


def start_api(workdir: pathlib.Path, database_url: str, **env) -> tuple[Proc, str]:
    port = free_port()
    full_env = {
        "CUSTODY_API_DATABASE_URL": database_url,
        "CUSTODY_API_SECRETS_KEY_FILE": str(secrets_key_file(workdir)),
        "CUSTODY_API_ENVIRONMENT": "development",
        "CUSTODY_API_WEBHOOK_ALLOW_INSECURE_URLS": "true",
        **{f"CUSTODY_API_{k.upper()}": str(v) for k, v in env.items()},
    }
    proc = Proc("api", [custody_cli(), "api", "serve", "--port", str(port)], workdir, env=full_env).start()
    url = f"http://127.0.0.1:{port}"

    def ready():
        return httpx.get(f"{url}/v1/ready", timeout=2).status_code == 200

    proc.wait_ready(ready, 60, "the API answers /v1/ready")
    return proc, url


def start_receiver(workdir: pathlib.Path, secret_file: pathlib.Path, fail_first: int = 0, port: int | None = None):
    port = port or free_port()
    out = workdir / f"received-{port}.jsonl"
    proc = Proc(
        f"receiver-{port}",
        [sys.executable, str(HERE / "webhook_receiver.py"), "--port", str(port), "--secret-file", str(secret_file),
         "--out", str(out), "--fail-first", str(fail_first)],
        workdir,
    ).start()

    def ready():
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    proc.wait_ready(ready, 30, "the receiver listens")
    return proc, f"http://127.0.0.1:{port}/hook", out


def received(out: pathlib.Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def bootstrap_key(workdir: pathlib.Path, database_url: str, scopes: str, name: str = "ops"):
    """`custody apikey create` on the database, as an operator would; returns (key id, pem path)."""
    import subprocess

    pem = workdir / f"{name}.pem"
    out = subprocess.run(
        [custody_cli(), "apikey", "create", "--database-url", database_url, "--name", name, "--scopes", scopes,
         "--private-key-out", str(pem)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, f"custody apikey create failed: {out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])["id"], pem
