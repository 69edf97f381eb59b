"""Shared options of the node's offline tools (`custody ledger …`, `custody audit …`)."""

from __future__ import annotations

import argparse
import pathlib

import sqlalchemy as sa

from node.config import Settings
from node.store import Store


def add_database_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="sqlite:///path or postgresql+psycopg://…; default: CUSTODY_DATABASE_URL or <data_dir>/node.db")
    p.add_argument("--schema", help="PostgreSQL schema holding the tables (default: the search path)")


class DatabaseNotFound(Exception):
    pass


def open_from_args(args) -> Store:
    """Opens the database without migrating it: these tools read, they never create one."""
    url = args.database_url or Settings().resolved_database_url()
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not pathlib.Path(parsed.database or "").is_file():
        raise DatabaseNotFound(f"no database at {parsed.database!r}: check --database-url or CUSTODY_DATA_DIR")
    return Store(url, schema=args.schema, pool_size=1)
