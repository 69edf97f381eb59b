"""custody-verify: check a por-mst/1 user proof (either encoding: por-mst/1 or
por-mst/1-compact), a signed snapshot header, or an assets file.

    custody-verify proof alice.json [--signed-header header.json --public-key HEX]
    custody-verify header header.json --public-key HEX [--prev previous-header.json]
    custody-verify assets assets.json --signed-header header.json --public-key HEX [--ethereum-rpc URL] [--bitcoin-rpc URL]

Exit status 0 only when everything checked is valid; 1 when something is invalid (the reason
is printed, e.g. `invalid: root_hash_mismatch: ...`); 2 for usage errors and unreadable files.

Dependencies, on purpose few: a user proof needs only the standard library; a header adds
`cryptography` (Ed25519); an assets file adds `coincurve` (secp256k1 recovery) and
`pycryptodome` (Keccak-256). They are imported only when needed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from node import limits
from proofs import mst


class _Usage(Exception):
    pass


def _read(path: str, max_bytes: int):
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror}") from None
    return mst.load_json(data, max_bytes)


def _header(args):
    from proofs import header as hdr

    if not args.public_key:
        raise _Usage("--public-key is required: a header is only as good as the key you pinned")
    prev = _read(args.prev, limits.POR_HEADER_FILE_BYTES_MAX) if getattr(args, "prev", None) else None
    return hdr.verify_signed_header(_read(args.signed_header, limits.POR_HEADER_FILE_BYTES_MAX), args.public_key, prev)


def cmd_proof(args) -> list[str]:
    verified = mst.verify_user_proof(_read(args.file, limits.POR_PROOF_FILE_BYTES_MAX))
    if args.account_id is not None and verified.account_id != args.account_id:
        raise mst.ProofInvalid("account_mismatch", f"the proof is for {verified.account_id!r}, not {args.account_id!r}")
    lines = [
        f"valid: proof for {verified.account_id} in snapshot {verified.snapshot_id}",
        f"root {verified.root_hash}",
    ]
    for code, mine, total in zip(verified.assets, verified.account_balances, verified.root_sums):
        lines.append(f"{code}: your balance {mine} is counted in total liabilities {total}")
    if args.signed_header:
        header = _header(args)
        if header["snapshot_id"] != verified.snapshot_id:
            raise mst.ProofInvalid("snapshot_mismatch", "the proof is for another snapshot than the header")
        if header["root"] != {"hash": verified.root_hash, "sums": [str(x) for x in verified.root_sums]}:
            raise mst.ProofInvalid("root_mismatch", "the proof's root is not the signed header's root")
        if [a["code"] for a in header["assets"]] != list(verified.assets):
            raise mst.ProofInvalid("assets_mismatch", "the proof's assets are not the header's")
        lines.append(f"valid: the root is the one signed in the header ({header['created_at']})")
    return lines


def cmd_header(args) -> list[str]:
    args.signed_header = args.file
    header = _header(args)
    lines = [f"valid: header of snapshot {header['snapshot_id']} signed by {args.public_key}"]
    if args.prev:
        lines.append("valid: it chains to the previous header")
    return lines


def cmd_assets(args) -> list[str]:
    from proofs import assets as ast

    header = _header(args)
    doc = _read(args.file, limits.POR_ASSETS_FILE_BYTES_MAX)
    try:
        verified = ast.verify_assets_file(doc, header)
    except ast.AssetsInvalid as exc:
        raise mst.ProofInvalid(exc.reason, exc.detail) from None
    lines = [f"valid: {sum(verified.addresses.values())} address signatures for snapshot {verified.snapshot_id}"]
    try:
        if args.bitcoin_rpc:
            lines += ast.reread_bitcoin(doc, header, _with_password(args.bitcoin_rpc, args.bitcoin_rpc_password_file))
        if args.ethereum_rpc:
            lines += ast.reread_ethereum(doc, header, args.ethereum_rpc)
    except ast.AssetsInvalid as exc:
        raise mst.ProofInvalid(exc.reason, exc.detail) from None
    for a, liabilities in zip(header["assets"], header["root"]["sums"]):
        code = a["code"]
        reserves = verified.reserves.get(code, 0)
        lines.append(
            f"{code}: reserves {reserves} / liabilities {liabilities} = {ast.ratio_text(reserves, int(liabilities))}"
        )
    return lines


def _with_password(url: str, password_file: str | None) -> str:
    """The RPC URL with the password read from a file (a secret never travels on a command line,
    where every local user can read it in /proc); the URL names the user: http://user@host:port."""
    if password_file is None:
        return url
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if not parts.username or parts.password is not None:
        raise _Usage("with --bitcoin-rpc-password-file the URL names the user and no password: http://user@host:port")
    try:
        password = pathlib.Path(password_file).read_text().strip()
    except OSError as exc:
        raise _Usage(f"--bitcoin-rpc-password-file: {exc}") from None
    userinfo = f"{urllib.parse.quote(parts.username, safe='')}:{urllib.parse.quote(password, safe='')}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc.rpartition('@')[2]}"))


def main(argv: list[str] | None = None) -> int:
    if not __debug__:
        print("custody-verify: refusing to run under python -O (asserts guard its own invariants)", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="custody-verify", description="Verify por-mst/1 proofs of reserves.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("proof", help="verify your inclusion proof")
    p.add_argument("file")
    p.add_argument("--signed-header", help="also check the proof's root against this signed header")
    p.add_argument("--public-key", help="the snapshot key you trust (hex Ed25519)")
    p.add_argument("--account-id", help="also check that the proof is for this account (yours)")
    p.set_defaults(run=cmd_proof)
    h = sub.add_parser("header", help="verify a signed snapshot header")
    h.add_argument("file")
    h.add_argument("--public-key", required=True, help="the snapshot key you trust (hex Ed25519)")
    h.add_argument("--prev", help="the previous signed header: check the chain")
    h.set_defaults(run=cmd_header)
    a = sub.add_parser("assets", help="verify an assets file (address signatures, reserves ÷ liabilities)")
    a.add_argument("file")
    a.add_argument("--signed-header", required=True)
    a.add_argument("--public-key", required=True, help="the snapshot key you trust (hex Ed25519)")
    a.add_argument("--ethereum-rpc", help="re-read ETH balances at the header's height from this node (one you trust)")
    a.add_argument("--bitcoin-rpc", help="re-read BTC balances at the header's height from this node (one you trust, "
                   "with an address index: btcd --addrindex): http://user@host:port with --bitcoin-rpc-password-file, "
                   "or http://user:pass@host:port (visible to other local users)")
    a.add_argument("--bitcoin-rpc-password-file", help="a file holding the --bitcoin-rpc password")
    a.set_defaults(run=cmd_assets)
    args = parser.parse_args(argv)
    try:
        lines = args.run(args)
    except _Usage as exc:
        print(f"custody-verify: {exc}", file=sys.stderr)
        return 2
    except mst.ProofInvalid as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
