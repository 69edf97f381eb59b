"""The Alembic migrations build exactly the schema the code declares (node.store.models), on
both databases, and migrating twice changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from node.store.models import metadata


def test_migrations_match_the_models(store):
    store.migrate()  # a second time: idempotent
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == [], diff


def test_amounts_use_exact_column_types(store):
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        cols = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("accounts")}
    t = cols["credits_posted"]
    if store.dialect == "postgresql":
        assert isinstance(t, sa.Numeric) and (t.precision, t.scale) == (78, 0)
    else:
        assert isinstance(t, sa.Text) or "TEXT" in str(t).upper()
