"""Alembic environment: migrations run on the connection node.store.Store hands over."""

from alembic import context

from node.store.models import metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through node.store.Store.migrate()"
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
