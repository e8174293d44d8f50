"""The accounting consumer end to end: JetStream -> RequestIngest -> Postgres, exactly once."""

import asyncio
from collections.abc import Callable

import asyncpg
import nats

from orqen.v1 import events_pb2
from orqen_accounting.ingest import RequestIngest
from orqen_accounting.ledger import Ledger
from orqen_accounting.repository import AccountingRepository
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames, ensure_stream
from orqen_common.prices import Prices


async def test_events_become_rows_once_across_redelivery_and_a_restarted_consumer(
    repo: AccountingRepository,
    pool: asyncpg.Pool,
    orqen_nats_url: str,
    orqen_nats_prefix: str,
    event: Callable[..., events_pb2.RequestCompleted],
) -> None:
    account = await repo.ensure_account("acme")
    names = EventNames(orqen_nats_prefix)
    nc = await nats.connect(orqen_nats_url)
    js = nc.jetstream()
    await ensure_stream(js, names)

    async def publish(request_id: str, msg_id: str) -> None:
        # Distinct Nats-Msg-Id values defeat JetStream's dedupe, like a replay outside its window.
        payload = event(request_id, account["id"]).SerializeToString()
        await js.publish(names.subject(REQUEST_COMPLETED), payload, headers={"Nats-Msg-Id": msg_id})

    for i in range(20):
        await publish(f"req_{i}", f"m{i}")
    await js.publish(names.subject(REQUEST_COMPLETED), b"\xff not protobuf", headers={"Nats-Msg-Id": "poison"})

    async def run_consumer_until(count: int) -> None:
        stop = asyncio.Event()
        consumer = DurableConsumer(
            orqen_nats_url,
            names,
            "accounting",
            REQUEST_COMPLETED,
            RequestIngest(Ledger(pool), Prices()),
            batch=7,
            max_wait=0.2,
        )
        task = asyncio.create_task(consumer.run(stop))
        for _ in range(200):
            if await pool.fetchval("SELECT count(*) FROM requests") >= count:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    await run_consumer_until(20)
    for i in range(10):  # the same requests again, as a replay would deliver them
        await publish(f"req_{i}", f"replay{i}")
    await publish("req_new", "m-new")
    await run_consumer_until(21)  # a restarted consumer resumes from its durable position
    await nc.close()
    assert await pool.fetchval("SELECT count(*) FROM requests") == 21
    assert await pool.fetchval("SELECT sum(input_tokens) FROM requests") == 21 * 10
