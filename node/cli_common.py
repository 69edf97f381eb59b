"""Shared options of the node's offline tools (`custody ledger …`, `custody audit …`)."""

from __future__ import annotations

import argparse

from node.config import Settings
from node.store import Store


def add_database_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="sqlite:///path or postgresql+psycopg://…; default: CUSTODY_DATABASE_URL or <data_dir>/node.db")
    p.add_argument("--schema", help="PostgreSQL schema holding the tables (default: the search path)")


def open_from_args(args) -> Store:
    url = args.database_url or Settings().resolved_database_url()
    return Store(url, schema=args.schema, pool_size=1)
