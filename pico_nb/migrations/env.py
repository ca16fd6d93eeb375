"""Alembic environment: runs on the engine pico_nb hands over, never on an ini file's URL."""

from __future__ import annotations

from alembic import context

from pico_nb.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
