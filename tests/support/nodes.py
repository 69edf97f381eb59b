"""Chain test nodes started by the tests themselves: btcd in regtest and Anvil, each with a
fresh data directory and free ports on 127.0.0.1, stopped by pid. Also the test ERC-20's
compiler (solc-js through node). Reused by the withdrawal tests.

The binaries come from `deploy/dev/tools.sh test` (into .tools/); a missing one is a failure
that says so.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import httpx

from tests.support.procs import Proc, free_port, tail, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
BTCD = TOOLS / "bin" / "btcd"
ANVIL = TOOLS / "npm" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
SOLC_JS = TOOLS / "npm" / "node_modules" / "solc"
READY_TIMEOUT_S = 60

BTCD_RPC_USER = "custody-test"
BTCD_RPC_PASSWORD = "custody-test-only-password"  # a local regtest node in a test: not a secret


class ToolMissing(AssertionError):
    pass


def wait_ready(proc: Proc, predicate, what: str) -> None:
    """Polls `predicate` until it holds; fails at once, with the process's stderr, if the
    process dies (Proc.wait_ready keeps polling a dead process until its deadline)."""

    def check():
        if not proc.alive():
            return "died"
        return predicate() and "ready"

    outcome = wait_until(check, READY_TIMEOUT_S, f"{proc.name}: {what}")
    if outcome == "died":
        raise AssertionError(
            f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{tail(proc.stderr_path)}"
        )


def require(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.exists():
        raise ToolMissing(f"{what} not found at {path}: run `deploy/dev/tools.sh test` (or `make test`)")
    return path


def _json_rpc(url: str, method: str, params=(), auth=None, version="2.0"):
    body = {"jsonrpc": version, "id": 1, "method": method, "params": list(params)}
    r = httpx.post(url, json=body, auth=auth, timeout=10)
    doc = r.json()
    if doc.get("error"):
        raise RuntimeError(f"{method}: {doc['error']}")
    return doc["result"]


def write_btcd_config(path: pathlib.Path, user: str, password: str) -> pathlib.Path:
    """btcd's ini config holding the RPC credentials (0600), passed as --configfile: a password
    on a command line is readable by every local user (/proc/<pid>/cmdline). btcctl reads the
    same keys from its own --configfile."""
    assert "\n" not in user + password and ":" not in user
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[Application Options]\nrpcuser={user}\nrpcpass={password}\n")
    return path


class Btcd:
    """btcd --regtest with its own datadir; `generate` mines to `mining_address`. The RPC
    credentials are in `btcd.conf` (0600) in its workdir, never on its command line."""

    def __init__(self, workdir: pathlib.Path, mining_address: str, txindex: bool = True):
        require(BTCD, "btcd")
        self.workdir = pathlib.Path(workdir)
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.url = f"http://127.0.0.1:{self.rpc_port}"
        self.mining_address = mining_address
        self.config_path = self.workdir / "btcd.conf"
        self.proc = Proc(
            "btcd",
            [
                BTCD,
                f"--configfile={self.config_path}",
                "--regtest",
                f"--datadir={self.workdir / 'data'}",
                f"--logdir={self.workdir / 'log'}",
                f"--listen=127.0.0.1:{self.p2p_port}",
                f"--rpclisten=127.0.0.1:{self.rpc_port}",
                "--notls",
                f"--miningaddr={mining_address}",
                "--nodnsseed",
                "--debuglevel=info",
            ]
            + (["--txindex"] if txindex else []),
            self.workdir,
        )

    def call(self, method: str, *params):
        return _json_rpc(self.url, method, params, auth=(BTCD_RPC_USER, BTCD_RPC_PASSWORD), version="1.0")

    def start(self) -> "Btcd":
        write_btcd_config(self.config_path, BTCD_RPC_USER, BTCD_RPC_PASSWORD)
        self.proc.start()
        wait_ready(self.proc, lambda: self.call("getblockcount") >= 0, "getblockcount answers")
        return self

    def generate(self, n: int) -> list[str]:
        return self.call("generate", n)

    def height(self) -> int:
        return self.call("getblockcount")

    def mempool(self) -> list[str]:
        return self.call("getrawmempool")

    def stop(self) -> None:
        self.proc.stop()


class Anvil:
    """Anvil on a free port with chain id 1337; `--no-mining` when `mining=False` (blocks are
    then mined with `mine()`, for mempool and replacement tests)."""

    CHAIN_ID = 1337

    def __init__(self, workdir: pathlib.Path, mining: bool = True):
        require(ANVIL, "anvil")
        self.workdir = pathlib.Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [ANVIL, "--host", "127.0.0.1", "--port", self.port, "--chain-id", self.CHAIN_ID, "--silent",
                "--accounts", "2"]
        if not mining:
            argv.append("--no-mining")
        self.proc = Proc("anvil", argv, self.workdir)

    def call(self, method: str, *params):
        return _json_rpc(self.url, method, params)

    def start(self) -> "Anvil":
        self.proc.start()
        wait_ready(self.proc, lambda: int(self.call("eth_chainId"), 16) == self.CHAIN_ID, "eth_chainId answers")
        return self

    def mine(self, n: int = 1) -> None:
        self.call("anvil_mine", hex(n))

    def set_balance(self, address: str, wei: int) -> None:
        self.call("anvil_setBalance", address, hex(wei))

    def height(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def stop(self) -> None:
        self.proc.stop()


def compile_solidity(source: pathlib.Path, contract: str) -> tuple[list, bytes]:
    """Compiles `source` with solc-js (standard JSON) and returns (abi, creation bytecode)."""
    require(SOLC_JS, "solc-js")
    node = shutil.which("node")
    if node is None:
        raise ToolMissing("node (Node.js) not found on PATH: it runs solc-js")
    standard = {
        "language": "Solidity",
        "sources": {source.name: {"content": source.read_text()}},
        "settings": {"optimizer": {"enabled": False}, "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
    }
    script = (
        "const solc = require(process.argv[1]);"
        "let input = ''; process.stdin.on('data', d => input += d);"
        "process.stdin.on('end', () => process.stdout.write(solc.compile(input)));"
    )
    res = subprocess.run(
        [node, "-e", script, str(SOLC_JS)], input=json.dumps(standard), capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )
    if res.returncode != 0:
        raise AssertionError(f"solc-js failed: {res.stderr[-2000:]}")
    out = json.loads(res.stdout)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise AssertionError("solc errors: " + "\n".join(e["formattedMessage"] for e in errors))
    c = out["contracts"][source.name][contract]
    return c["abi"], bytes.fromhex(c["evm"]["bytecode"]["object"])
