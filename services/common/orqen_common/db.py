"""PostgreSQL: one plain postgresql:// URL in the configuration, the driver chosen here."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

# SQLSTATE classes of failures that come from the server's state, not from the data written:
# 08 connection, 40 transaction rollback (serialization, deadlock), 53 insufficient resources,
# 57 operator intervention (shutdown, not accepting connections yet), 58 system (I/O) error.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


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


def unavailable(err: Exception) -> bool:
    """Whether a failed write failed because Postgres is unreachable or busy (retry it as it is)."""
    if isinstance(err, (OSError, TimeoutError)):
        return True
    return isinstance(err, asyncpg.PostgresError) and str(err.sqlstate or "")[:2] in _UNAVAILABLE_CLASSES


def storable_text(value: str) -> str:
    """`value` as a text or jsonb column can hold it: Postgres refuses U+0000, so it becomes U+FFFD."""
    return value.replace("\x00", "\ufffd")
