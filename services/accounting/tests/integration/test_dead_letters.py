"""An event accounting cannot store is parked after a bounded number of deliveries; ingest goes on.

Real NATS and Postgres: the accounting consumer as the service wires it, a poison event among
healthy ones (a constraint the ledger's INSERT violates, standing in for a defect), then the fix
and `orqen events replay`.
"""

from __future__ import annotations

import asyncio

import asyncpg
import nats

from orqen.v1 import common_pb2, events_pb2
from orqen_accounting.__main__ import MIGRATIONS, SCHEMA
from orqen_accounting.ingest import RequestIngest
from orqen_accounting.ledger import Ledger
from orqen_common import metrics
from orqen_common.db import create_pool, unavailable
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames, dead_letters
from orqen_common.migrations import upgrade_to_head
from orqen_common.prices import Prices
from orqen_stack.cli import replay_dead_letters

from .test_ingest_resilience import count, events, publish_directly, wait_for

HEALTHY = 200
POISON_MODEL = "model-the-ledger-refuses"
NUL = "\x00"


def hostile_event(request_id: str, account_id: str) -> events_pb2.RequestCompleted:
    """An event whose every caller-chosen string holds a NUL, as an internal publisher may send it."""
    event = events(1)[0]
    event.context.request_id = request_id
    event.context.account_id = account_id
    event.context.session_id = f"session{NUL}1"
    event.model_requested = f"gpt-4o-mini{NUL}x"
    event.dispatch.model = f"gpt-4o-mini{NUL}x"
    event.error = f"upstream said {NUL}"
    event.tools_called.append(f"get{NUL}weather")
    event.dispatch.attempts.append(common_pb2.Attempt(model=f"m{NUL}", error=f"e{NUL}"))
    return event


async def test_a_poison_event_is_parked_the_others_are_stored_once_and_replay_stores_it_after_the_fix(
    orqen_database_url: str, orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    names = EventNames(orqen_nats_prefix)
    batch = events(HEALTHY)
    poison = events_pb2.RequestCompleted()
    poison.CopyFrom(batch[HEALTHY // 2])
    poison.context.request_id, poison.model_requested = "req_poison", POISON_MODEL
    nul = hostile_event("req_nul", batch[0].context.account_id)
    await publish_directly(orqen_nats_url, names, [*batch[:100], poison, nul, *batch[100:]])

    conn = await asyncpg.connect(orqen_database_url)
    await conn.execute(
        f"ALTER TABLE accounting.requests ADD CONSTRAINT defect CHECK (model_requested <> '{POISON_MODEL}')"
    )
    parked = metrics.EVENTS_DEAD_LETTERED.labels(names.durable("accounting"))
    parked_before = parked._value.get()
    pool = await create_pool(orqen_database_url, 4, SCHEMA)
    stop = asyncio.Event()
    consumer = DurableConsumer(
        orqen_nats_url,
        names,
        "accounting",
        REQUEST_COMPLETED,
        RequestIngest(Ledger(pool), Prices()),
        batch=50,
        max_wait=0.2,
        max_deliveries=3,
        redelivery_delay=0.1,
        unavailable=unavailable,
    )
    task = asyncio.create_task(consumer.run(stop))
    nc = await nats.connect(orqen_nats_url)
    rows = "SELECT count(*) FROM accounting.requests"
    try:
        # The healthy events and the one full of NULs are all stored, the poison one is parked.
        await wait_for(lambda: _is(orqen_database_url, rows, HEALTHY + 1))
        for _ in range(600):
            if parked._value.get() - parked_before == 1:
                break
            await asyncio.sleep(0.05)
        letters = await dead_letters(nc.jetstream(), names, "accounting")
        assert [(d.request_id, d.deliveries, d.subject) for d in letters] == [
            ("req_poison", 3, names.subject(REQUEST_COMPLETED))
        ]
        assert "CheckViolationError" in letters[0].error
        assert parked._value.get() - parked_before == 1
        await _assert_counted_once(orqen_database_url, HEALTHY + 1)
        stored = await conn.fetchrow(
            "SELECT model_requested, session_id, error, tools_called, attempts::text AS attempts "
            "FROM accounting.requests WHERE request_id = 'req_nul'"
        )
        assert dict(stored) == {
            "model_requested": "gpt-4o-mini\ufffdx",
            "session_id": "session\ufffd1",
            "error": "upstream said \ufffd",
            "tools_called": ["get\ufffdweather"],
            "attempts": '[{"error": "e\ufffd", "model": "m\ufffd"}]',
        }

        await conn.execute("ALTER TABLE accounting.requests DROP CONSTRAINT defect")  # the fix
        assert await replay_dead_letters(orqen_nats_url, names, "accounting") == 0
        await wait_for(lambda: _is(orqen_database_url, rows, HEALTHY + 2))
        await asyncio.sleep(0.5)  # anything replayed twice would land now
        await _assert_counted_once(orqen_database_url, HEALTHY + 2)
        assert await dead_letters(nc.jetstream(), names) == []
        assert parked._value.get() - parked_before == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()
        await pool.close()
        await conn.close()


async def _is(url: str, sql: str, expected: int) -> bool:
    return await count(url, sql) >= expected


async def _assert_counted_once(url: str, expected: int) -> None:
    assert await count(url, "SELECT count(DISTINCT request_id) FROM accounting.requests") == expected
    assert await count(url, "SELECT count(*) FROM accounting.requests") == expected
    assert await count(url, "SELECT sum(requests) FROM accounting.usage_daily") == expected
    assert await count(url, "SELECT sum(requests) FROM accounting.sessions") == expected
