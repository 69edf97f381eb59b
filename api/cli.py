"""`custody`: the one command line. Each subcommand lives in the package that owns it; this
module only dispatches, importing the owner lazily (a signer host never imports the API stack).

A subcommand module defines `add_arguments(parser)` and `run(args) -> int` (the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# name -> (module, one-line help). Kept in one table so `custody --help` lists everything.
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("api.dev", "run the whole system locally on the embedded defaults"),
    "demo": ("mpc.demo", "local threshold keygen and signing demo (all parties in one process)"),
    "signer": ("mpc.signer.cli", "run one signer peer: custody signer --config FILE"),
    "cluster": ("mpc.cluster_cli", "local signer cluster tools: cluster init --peers N --threshold T"),
    "vault": ("mpc.vault_cli", "key ceremonies as approved intents: vault reshare|keygen|retire propose|run, vault approve"),
    "ledger": ("node.cli_ledger", "ledger tools: ledger check"),
    "audit": ("node.cli_audit", "audit log tools: audit verify"),
    "chains": ("chains.cli", "chain tools: chains address --xpub X --chain bitcoin --network regtest --path 0/17"),
    "api": ("api.cli_api", "the custody API: api serve | api keypair --out FILE"),
    "apikey": ("api.cli_apikey", "API keys: apikey create (bootstrap on the database, or through the API)"),
    "balances": ("api.cli_client", "a sub-account's balances through the API: balances SUB_ACCOUNT"),
    "call": ("api.cli_call", "one signed API request: call METHOD PATH [JSON] (the API's curl)"),
    "reserves": ("proofs.cli", "proof-of-reserves snapshots: reserves history | export | init-key | snapshot"),
    "withdrawals": ("api.withdrawals_root", "withdrawal pipeline: withdrawals worker | show | queue | review | reconcile"),
    "node": ("api.node_root", "the node process: API + chain scan, deposits, withdrawal pipeline, rebalancer, webhooks: node --config F"),
    "approve": ("api.cli_approve", "sign a withdrawal's intent with your approver key: approve --withdrawal ID --approver-id A --key-file K"),
    "whitelist": ("api.cli_whitelist", "a sub-account's withdrawal address whitelist through the API: whitelist add|list|remove"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_) in COMMANDS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            out[name] = (module, help_)
    return out


def main(argv: list[str] | None = None) -> int:
    if not __debug__:
        # Programmer errors are asserts; python -O would strip them.
        print("custody: refusing to run under python -O (asserts are part of the safety checks)", file=sys.stderr)
        return 2
    available = _available()
    parser = argparse.ArgumentParser(prog="custody", description="Self-hosted custody node and MPC signer.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    argv = sys.argv[1:] if argv is None else argv
    for name, (module_name, help_) in available.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Only the chosen subcommand's module is imported.
        if argv and argv[0] == name:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`custody call ... | head`): no traceback. Python's own recipe:
        # point stdout at /dev/null so that the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
