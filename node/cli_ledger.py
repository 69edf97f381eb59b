"""`custody ledger check`: runs the invariant checker; exit 1 naming every violation.
`custody ledger migrate`: brings the schema to the newest migration."""

from __future__ import annotations

import sys

from node.cli_common import add_database_arguments, open_from_args


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="check every ledger invariant and the journal chain")
    add_database_arguments(check)
    mig = sub.add_parser("migrate", help="apply the database migrations")
    add_database_arguments(mig)


def run(args) -> int:
    from node import invariants

    store = open_from_args(args)
    try:
        if args.ledger_command == "migrate":
            store.migrate()
            print("migrated")
            return 0
        violations = invariants.check(store)
    finally:
        store.dispose()
    if violations:
        for v in violations:
            print(f"VIOLATION {v}", file=sys.stderr)
        print(f"ledger check: {len(violations)} violation(s)")
        return 1
    print("ledger check: ok (ledgers balance, constraints hold, pending resolved once, journal intact)")
    return 0
