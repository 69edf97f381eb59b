"""`custody dev up`: the whole system locally. For now it runs the MPC demo (mpc.demo): a
local threshold keygen and signing; it grows into the node, signers and chains."""

from __future__ import annotations


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="run the local system (today: the threshold keygen + signing demo)")
    from mpc import demo

    demo.add_arguments(up)


def run(args) -> int:
    if args.dev_command == "up":
        from mpc import demo

        return demo.run(args)
    return 2
