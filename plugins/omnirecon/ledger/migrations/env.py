"""Alembic environment: run by Ledger.migrate() (connection passed in) or `alembic -x url=...`."""
from alembic import context
from sqlalchemy import create_engine

from omnirecon.ledger.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("connection_url") or context.get_x_argument(as_dictionary=True).get("url")
    engine = create_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
