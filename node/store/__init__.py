"""Storage: SQLAlchemy Core tables, Alembic migrations, and the one write path.

    store = open_store("sqlite:///data/node.db")        # or postgresql+psycopg://…
    store.write(actor, action, fn)                       # every change goes through here
"""

from node.store.engine import Store, WriteTx, open_store

__all__ = ["Store", "WriteTx", "open_store"]
