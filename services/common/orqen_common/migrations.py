"""Alembic migrations, one history per service schema, run at start under an advisory lock."""

from __future__ import annotations

from pathlib import Path

from orqen_common.db import sqlalchemy_url


def upgrade_to_head(database_url: str, schema: str, script_location: Path) -> None:
    """Create `schema` and apply its migrations; concurrent replicas wait for each other."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"orqen-migrate-{schema}"})
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            config = Config()
            config.set_main_option("script_location", str(script_location))
            config.attributes["connection"] = conn
            config.attributes["schema"] = schema
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def run_env() -> None:
    """The body of every service's alembic env.py: online migrations on the given connection."""
    from alembic import context

    config = context.config
    schema: str = config.attributes["schema"]
    context.configure(
        connection=config.attributes["connection"],
        version_table_schema=schema,
        target_metadata=None,
    )
    with context.begin_transaction():
        context.execute(f'SET LOCAL search_path TO "{schema}"')
        context.run_migrations()
