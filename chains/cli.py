"""`custody chains`: chain tools that need no node and no secret.

    custody chains address --xpub XPUB --chain bitcoin --network regtest --path 0/17
    custody chains address --xpub XPUB --chain ethereum --path 0/17

The xpub is the vault's group public key and chain code (public material only).
"""

from __future__ import annotations

import argparse
import sys

from chains.keys import Bip32VaultKeys, InvalidPath, check_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="chains_command", required=True)
    a = sub.add_parser("address", help="our deposit/internal address at a non-hardened path")
    a.add_argument("--xpub", required=True, help="the vault's extended public key")
    a.add_argument("--chain", required=True, choices=["bitcoin", "ethereum"])
    a.add_argument("--network", choices=["mainnet", "testnet", "regtest"], help="bitcoin network")
    a.add_argument("--path", required=True, help="e.g. 0/17 (deposit address 17)")


def run(args) -> int:
    try:
        path = check_path(tuple(int(p) for p in args.path.strip("/").split("/")))
        keys = Bip32VaultKeys.from_xpub(args.xpub)
    except (ValueError, InvalidPath) as exc:
        print(f"custody chains: {exc}", file=sys.stderr)
        return 2
    pub = keys.child_public_key(path)
    if args.chain == "bitcoin":
        if not args.network:
            print("custody chains: --network is required for bitcoin", file=sys.stderr)
            return 2
        from chains.bitcoin.tx import p2wpkh_address

        print(p2wpkh_address(pub, args.network))
    else:
        from chains.ethereum.tx import address_of

        print(address_of(pub))
    return 0
