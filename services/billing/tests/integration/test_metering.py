"""Billing meters request events idempotently and projects the month's charge."""

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import nats
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import billing_pb2, common_pb2, dispatch_pb2, events_pb2
from orqen_billing.__main__ import MIGRATIONS, SCHEMA
from orqen_billing.metering import UsageMeter
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_common.context import SERVICE_PRINCIPAL, principal_var
from orqen_common.db import create_pool
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames, ensure_stream
from orqen_common.migrations import upgrade_to_head

ACCOUNT = "5f0a4b3e-8e6e-4c1e-9a51-2f3f7d7a9c10"


class Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def _event(request_id: str, tokens: int) -> Msg:
    created = Timestamp()
    created.FromDatetime(dt.datetime.now(dt.UTC))
    event = events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(request_id=request_id, account_id=ACCOUNT),
        created_at=created,
        dispatch=dispatch_pb2.DispatchSummary(usage=common_pb2.Usage(input_tokens=tokens, output_tokens=1)),
    )
    return Msg(event.SerializeToString())


async def test_usage_is_metered_once_per_request(orqen_database_url: str, monkeypatch: Any) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool: asyncpg.Pool = await create_pool(orqen_database_url, 2, SCHEMA)
    try:
        meter = UsageMeter(pool)
        batch: Sequence[Any] = [_event("r1", 99), _event("r2", 199)]
        await meter(batch)
        await meter(batch)  # redelivery
        monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "t")
        principal_var.set(SERVICE_PRINCIPAL)
        status = await BillingServicer(pool, BillingSettings()).GetBilling(  # type: ignore[call-arg]
            billing_pb2.GetBillingRequest(account_id=ACCOUNT),
            None,  # type: ignore[arg-type]
        )
    finally:
        await pool.close()
    assert (status.tier, status.requests, status.tokens) == ("free", 2, 300)
    assert status.projected_charge_cents == 0 and status.included_tokens == 1_000_000


async def test_a_request_id_holding_a_nul_is_metered(orqen_database_url: str) -> None:
    """Internal publishers' events are stored whatever their strings hold (Postgres text refuses U+0000)."""
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool: asyncpg.Pool = await create_pool(orqen_database_url, 2, SCHEMA)
    try:
        await UsageMeter(pool)([_event("req\x00nul", 9)])  # type: ignore[list-item]
        stored = await pool.fetchval("SELECT request_id FROM metered_requests")
    finally:
        await pool.close()
    assert stored == "req\ufffdnul"


async def test_the_billing_consumer_meters_each_request_once_from_jetstream(
    orqen_database_url: str, orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool: asyncpg.Pool = await create_pool(orqen_database_url, 2, SCHEMA)
    names = EventNames(orqen_nats_prefix)
    nc = await nats.connect(orqen_nats_url)
    js = nc.jetstream()
    await ensure_stream(js, names)

    async def publish(request_id: str, msg_id: str) -> None:
        # Distinct Nats-Msg-Id values defeat JetStream's dedupe, as a replay outside its window would.
        await js.publish(names.subject(REQUEST_COMPLETED), _event(request_id, 9).data, headers={"Nats-Msg-Id": msg_id})

    async def consume_until(count: int) -> None:
        stop = asyncio.Event()
        consumer = DurableConsumer(orqen_nats_url, names, "billing", REQUEST_COMPLETED, UsageMeter(pool), max_wait=0.2)
        task = asyncio.create_task(consumer.run(stop))
        for _ in range(200):
            if await pool.fetchval("SELECT count(*) FROM metered_requests") >= count:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    try:
        for i in range(5):
            await publish(f"req_{i}", f"m{i}")
        await js.publish(names.subject(REQUEST_COMPLETED), b"\xff not protobuf", headers={"Nats-Msg-Id": "poison"})
        await consume_until(5)
        for i in range(5):
            await publish(f"req_{i}", f"replay{i}")
        await publish("req_new", "m-new")
        await consume_until(6)  # a restarted consumer resumes from its durable position
        assert await pool.fetchval("SELECT count(*) FROM metered_requests") == 6
        assert await pool.fetchval("SELECT sum(tokens) FROM metered_requests") == 6 * 10
    finally:
        await nc.close()
        await pool.close()
