"""Pytest fixtures for real Postgres, Redis and NATS (see orqen_testing.servers for the resolution order).

Enable in a conftest.py with `pytest_plugins = ["orqen_testing.pytest_plugin"]` (top-level conftest)
or `from orqen_testing.pytest_plugin import *` (any conftest).
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest

from orqen_testing.servers import (
    ServerPool,
    claimed_redis_db,
    delete_nats_streams,
    fresh_database,
    run_sync,
    shared_servers,
    unique_prefix,
)

__all__ = [
    "orqen_database_url",
    "orqen_nats_prefix",
    "orqen_nats_url",
    "orqen_postgres_url",
    "orqen_redis_db_url",
    "orqen_redis_prefix",
    "orqen_redis_url",
    "orqen_refused",
    "orqen_servers",
    "orqen_test_env",
]


@pytest.fixture(scope="session")
def orqen_servers() -> Iterator[ServerPool]:
    """The session's servers; the ones the session started are stopped when it ends."""
    pool = shared_servers()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def orqen_postgres_url(orqen_servers: ServerPool) -> str:
    """URL of the session's Postgres server (use `orqen_database_url` for a database of your own)."""
    return orqen_servers.postgres_url()


@pytest.fixture(scope="session")
def orqen_redis_url(orqen_servers: ServerPool) -> str:
    """URL of the session's Redis server (use `orqen_redis_db_url` for a database of your own)."""
    return orqen_servers.redis_url()


@pytest.fixture(scope="session")
def orqen_nats_url(orqen_servers: ServerPool) -> str:
    """URL of the session's NATS server, JetStream enabled (pair it with `orqen_nats_prefix`)."""
    return orqen_servers.nats_url()


@pytest.fixture
def orqen_database_url(orqen_postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for this test only, dropped afterwards."""
    with fresh_database(orqen_postgres_url) as url:
        yield url


@pytest.fixture
def orqen_redis_db_url(orqen_redis_url: str) -> Iterator[str]:
    """An empty Redis database claimed for this test only, flushed afterwards."""
    with claimed_redis_db(orqen_redis_url) as url:
        yield url


@pytest.fixture
def orqen_redis_prefix() -> str:
    """A key prefix (`t<hex>:`) unique to this test, for code that namespaces its keys."""
    return f"{unique_prefix()}:"


@pytest.fixture
def orqen_nats_prefix(orqen_nats_url: str) -> Iterator[str]:
    """A NATS prefix unique to this test; streams named after it are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    try:
        run_sync(delete_nats_streams(orqen_nats_url, prefix))
    except Exception as err:
        warnings.warn(f"could not delete NATS streams of {prefix}: {err}", stacklevel=1)


@pytest.fixture
def orqen_test_env(
    orqen_database_url: str, orqen_redis_db_url: str, orqen_nats_url: str, orqen_nats_prefix: str
) -> dict[str, str]:
    """ORQEN_* variables that point a service at this test's own database, Redis db and NATS prefix."""
    return {
        "ORQEN_DATABASE_URL": orqen_database_url,
        "ORQEN_REDIS_URL": orqen_redis_db_url,
        "ORQEN_NATS_URL": orqen_nats_url,
        "ORQEN_NATS_PREFIX": orqen_nats_prefix,
    }


@pytest.fixture
def orqen_refused() -> Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]:
    """`await orqen_refused(call, code)`: the gRPC call must fail with `code`; returns the error's details."""

    async def check(call: Awaitable[Any], code: grpc.StatusCode) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        assert failed.value.code() == code, failed.value.details()
        return failed.value.details() or ""

    return check
