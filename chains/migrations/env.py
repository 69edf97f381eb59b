"""Alembic environment of the chain adapters' database (the chains_* tables): migrations run on
the connection chains.state.migrate() hands over, versioned in their own table
(`chains_alembic_version`), so the adapters' database may be the node's or a separate one."""

from alembic import context

from chains.state import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through chains.state.migrate()"
# An engine with a schema_translate_map (tests: a PostgreSQL schema each) keeps its version there too.
schema = (connection.get_execution_options().get("schema_translate_map") or {}).get(None)
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, version_table=VERSION_TABLE,
                  version_table_schema=schema)
with context.begin_transaction():
    context.run_migrations()
