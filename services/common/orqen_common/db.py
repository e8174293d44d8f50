"""PostgreSQL: one plain postgresql:// URL in the configuration, the driver chosen here."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg


def plain_postgres_url(url: str) -> str:
    """Normalise `postgres://` and `postgresql+driver://` to `postgresql://`."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"ORQEN_DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(("postgresql", *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy/Alembic, through psycopg 3."""
    return "postgresql+psycopg" + plain_postgres_url(url)[len("postgresql") :]


async def create_pool(url: str, size: int, schema: str) -> asyncpg.Pool:
    """An asyncpg pool whose connections resolve unqualified names in `schema`."""
    pool = await asyncpg.create_pool(
        plain_postgres_url(url),
        min_size=1,
        max_size=size,
        server_settings={"search_path": schema, "application_name": f"orqen-{schema}"},
    )
    assert pool is not None
    return pool
