import datetime as dt
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import common_pb2, dispatch_pb2, events_pb2
from orqen_accounting.__main__ import MIGRATIONS, SCHEMA
from orqen_accounting.repository import AccountingRepository
from orqen_common.db import create_pool
from orqen_common.migrations import upgrade_to_head


@pytest.fixture
async def pool(orqen_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(orqen_database_url, 4, SCHEMA)
    yield pool
    await pool.close()


@pytest.fixture
def repo(pool: asyncpg.Pool) -> AccountingRepository:
    return AccountingRepository(pool)


def make_event(request_id: str, account_id: str, minute: int = 0, tokens: int = 10) -> events_pb2.RequestCompleted:
    created = Timestamp()
    created.FromDatetime(dt.datetime(2026, 11, 1, 12, minute, tzinfo=dt.UTC))
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(request_id=request_id, account_id=account_id, ingress="openai"),
        created_at=created,
        model_requested="gpt-4o-mini",
        status=200,
        dispatch=dispatch_pb2.DispatchSummary(
            provider="openai", model="gpt-4o-mini", usage=common_pb2.Usage(input_tokens=tokens, output_tokens=3)
        ),
    )


@pytest.fixture
def event() -> Callable[..., events_pb2.RequestCompleted]:
    """Builds a request.completed event: event(request_id, account_id, minute=0, tokens=10)."""
    return make_event
