"""Alembic environment: runs migrations on the connection that Cellar hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cellar.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    url = config.attributes.get("connection_url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(str(url))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
