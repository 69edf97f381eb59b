"""`custody reserves`: the snapshot history and the files a customer verifies.

    custody reserves history --store DIR [--limit N]
    custody reserves export --store DIR --snapshot SID --out DIR [--account ID ...] [--format por-mst/1-compact]
    custody reserves init-key --config F      # the sealed Ed25519 snapshot key (api/reserves_root.py)
    custody reserves snapshot --config F [--every-s N]   # the snapshot job: one tick, or every N s

`export` writes header.json (signed), assets.json and proof-<account>.json, each checked by
the reference verifier before it is written; verify them with `custody-verify` or the page
at proofs/web/verify.html.
"""

from __future__ import annotations

import json
import pathlib
import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="reserves_command", required=True)
    h = sub.add_parser("history", help="list snapshots, newest first")
    h.add_argument("--store", required=True, help="the snapshot store directory")
    h.add_argument("--limit", type=int, default=20)
    e = sub.add_parser("export", help="write a snapshot's public files and user proofs")
    e.add_argument("--store", required=True)
    e.add_argument("--snapshot", required=True, help="snapshot id (hex)")
    e.add_argument("--out", required=True)
    e.add_argument("--account", action="append", default=[], help="an account to export the proof of (repeatable)")
    e.add_argument("--format", choices=["por-mst/1", "por-mst/1-compact"], default="por-mst/1",
                   help="the proofs' encoding: por-mst/1 (default) or por-mst/1-compact, ~28 %% smaller "
                        "(proofs/por-mst-1-compact.md)")
    k = sub.add_parser("init-key", help="create the node's sealed snapshot key (refuses to replace one)")
    k.add_argument("--config", required=True, help="the node's TOML config with a [reserves] section")
    s = sub.add_parser("snapshot", help="the snapshot job: take a snapshot if due, sign it with the cluster, announce it")
    s.add_argument("--config", required=True, help="the node's TOML config with a [reserves] section")
    s.add_argument("--every-s", type=int, default=0, help="keep running, one tick every N seconds (0: one tick)")


def run(args) -> int:
    if args.reserves_command in ("init-key", "snapshot"):
        from api import reserves_root  # the composition root: store, chains, cluster

        if args.reserves_command == "init-key":
            return reserves_root.run_init_key(args.config)
        return reserves_root.run_snapshot(args.config, args.every_s)
    from proofs import header as hdr
    from proofs import mst
    from proofs.snapshot import SnapshotStore

    store_dir = pathlib.Path(args.store)
    if not (store_dir / "snapshots.sqlite3").exists():
        print(f"custody reserves: no snapshot store at {store_dir}", file=sys.stderr)
        return 2
    store = SnapshotStore(store_dir)
    try:
        if args.reserves_command == "history":
            try:
                rows = store.history(args.limit)
            except ValueError as exc:
                print(f"custody reserves: {exc}", file=sys.stderr)
                return 2
            for p in rows:
                h = p.signed_header["header"]
                totals = " ".join(f"{a['code']}={s}" for a, s in zip(h["assets"], h["root"]["sums"]))
                print(f"{p.seq}\t{p.snapshot_id}\t{h['created_at']}\tdepth={h['depth']}\t{totals}")
            return 0
        published = store.get(args.snapshot)
        if published is None:
            print(f"custody reserves: no snapshot {args.snapshot!r}", file=sys.stderr)
            return 1
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "header.json").write_text(json.dumps(published.signed_header, indent=1))
        (out / "assets.json").write_text(json.dumps(published.assets_doc, indent=1))
        key = published.signed_header["signature"]["public_key"]
        hdr.verify_signed_header(published.signed_header, key)
        for account in args.account:
            proof = store.proof(args.snapshot, account)
            if proof is None:
                print(f"custody reserves: {account!r} is not in snapshot {args.snapshot}", file=sys.stderr)
                return 1
            if args.format == mst.FORMAT_COMPACT:
                proof = mst.to_compact(proof)
            mst.verify_user_proof(proof)
            (out / f"proof-{account}.json").write_text(json.dumps(proof, separators=(",", ":")))
        print(f"wrote {out}: header.json, assets.json and {len(args.account)} proof(s); snapshot key {key}")
        return 0
    finally:
        store.close()
