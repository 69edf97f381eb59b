"""`custody audit verify`: recomputes the journal's hash chain offline and names the first
broken link (exit 1), or prints the head it verified (exit 0).
`custody audit log`: prints audit entries (who, what, when, before/after) as JSON lines."""

from __future__ import annotations

import json
import sys

from node.cli_common import add_database_arguments, open_from_args


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser("verify", help="verify the journal's hash chain")
    add_database_arguments(verify)
    show = sub.add_parser("log", help="print journal entries as JSON lines")
    add_database_arguments(show)
    show.add_argument("--after-seq", type=int, default=0)
    show.add_argument("--limit", type=int, default=100)


def run(args) -> int:
    from sqlalchemy import select

    from node import audit
    from node.store.models import chain_head

    store = open_from_args(args)
    try:
        with store.reading(snapshot=True) as conn:
            if args.audit_command == "log":
                for e in audit.entries(conn, args.after_seq, args.limit):
                    print(json.dumps({"seq": e.seq, "at_ns": e.at_ns, "actor": e.actor, "action": e.action, "body": e.body}))
                return 0
            broken = audit.verify(conn)
            head = conn.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)).one_or_none()
    finally:
        store.dispose()
    if broken is not None:
        print(f"audit verify: BROKEN at {broken}", file=sys.stderr)
        print(f"first broken link: seq {broken.seq} ({broken.reason})")
        return 1
    print(f"audit verify: ok, {head.seq} entries, head {head.hash}")
    return 0
