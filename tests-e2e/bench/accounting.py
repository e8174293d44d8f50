"""Accounting at scale: sustained ingest into Postgres, and account API latency over 1,000,000 rows.

Starts the whole stack (`make up`'s way; Postgres, Redis and NATS embedded unless ORQEN_TEST_*_URL
are set) and measures, with the real services:

1. ingest, backlog: request events already in JetStream, drained by an accounting service
   process of its own (the stack's services are idle meanwhile): events / (last row written -
   first row written), the service's sustained rate with the two cores to itself and Postgres.
2. ingest, live: events published as fast as one client can while the stack's accounting and
   billing consume them, all on the same two cores: events / (last row - first publish).
   Both runs check zero loss and zero doubles by counting the rows and the rollups exactly.
3. reads: 1,000,000 request rows for one account (written through the ledger's own batch path,
   spread over 60 days with their rollups and sessions), then p50/p95/p99 of account API calls
   through the edge with the account's API key, one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import nats
from google.protobuf.timestamp_pb2 import Timestamp

from bench.latency import percentile
from harness import stack_env
from orqen.v1 import common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_accounting.ingest import request_row
from orqen_accounting.ledger import Ledger
from orqen_common.auth import hash_api_key
from orqen_common.db import create_pool, plain_postgres_url
from orqen_common.events import REQUEST_COMPLETED, EventNames, ensure_stream
from orqen_common.prices import Prices
from orqen_stack.config import StackConfig
from orqen_stack.procs import free_port
from orqen_stack.supervisor import Stack

MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-haiku-4-5", "anthropic"), ("gpt-5-nano", "openai")]
TOOLS = [f"tool_{i}" for i in range(20)]


def event(account_id: str, at: dt.datetime, rng: random.Random) -> events_pb2.RequestCompleted:
    """A realistic request event: half of them tool-heavy and routed, with a trace; sessions; some failures."""
    created = Timestamp()
    created.FromDatetime(at)
    model, provider = rng.choice(MODELS)
    routed = rng.random() < 0.5
    # A/B control traffic (the default share, 5% of routed requests): every tool forwarded, the
    # trace is the decision the router would have made; routing calibration reads these rows.
    control = routed and rng.random() < 0.05
    kept = rng.sample(TOOLS, 3) if routed else []
    latency = rng.lognormvariate(6, 0.6)
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=f"req_{uuid.uuid4().hex}",
            account_id=account_id,
            api_key_id=str(uuid.uuid4()),
            session_id=f"session-{rng.randrange(50_000)}",
            ingress="openai",
        ),
        created_at=created,
        model_requested=model,
        status=200 if rng.random() < 0.97 else 429,
        stream=rng.random() < 0.3,
        latency_ms=latency,
        dispatch=dispatch_pb2.DispatchSummary(
            provider=provider,
            model=model,
            usage=common_pb2.Usage(
                input_tokens=rng.randrange(200, 8000), output_tokens=rng.randrange(10, 800), cached_input_tokens=0
            ),
            upstream_ms=latency * 0.95,
            ttft_ms=latency * 0.3,
            attempts=[common_pb2.Attempt(provider=provider, model=model, status=200, duration_ms=latency)],
            route_reason="requested",
        ),
        plan=optimizer_pb2.PlanStats(
            tools_input=20 if routed else 0,
            tools_output=(20 if control else 3) if routed else 0,
            routing=("semantic_ab_ctrl" if control else "semantic") if routed else "",
            tool_tokens_in=3000 if routed else 0,
            tool_tokens_out=(3000 if control else 450) if routed else 0,
        ),
        trace=optimizer_pb2.RoutingTrace(
            intent="book a flight to lisbon",
            mode="semantic",
            k=3,
            k_reason="within 0.25 of the best",
            candidates=[optimizer_pb2.ToolCandidate(name=t, score=0.9 - i / 30) for i, t in enumerate(TOOLS)],
        )
        if routed
        else None,
        tools_offered=TOOLS if routed else [],
        tools_forwarded=TOOLS if control else kept,
        tools_called=kept[:1],
    )


async def count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    return int(await pool.fetchval(sql, *args) or 0)


async def publish(env: dict[str, str], prefix: str, account_id: str, events: int) -> float:
    """Publish `events` request events of the account under `prefix`; returns when the first was sent."""
    rng, now = random.Random(1), dt.datetime.now(dt.UTC)
    batch = [event(account_id, now, rng) for _ in range(events)]
    payloads = [(e.context.request_id, e.SerializeToString()) for e in batch]
    names = EventNames(prefix)
    nc = await nats.connect(env["ORQEN_NATS_URL"])
    js = nc.jetstream()
    await ensure_stream(js, names)
    subject = names.subject(REQUEST_COMPLETED)
    started = time.perf_counter()
    for i in range(0, len(payloads), 1000):
        await asyncio.gather(
            *(js.publish(subject, data, headers={"Nats-Msg-Id": rid}) for rid, data in payloads[i : i + 1000])
        )
    print(f"  {events:,} events published in {time.perf_counter() - started:.1f} s by one client")
    await nc.close()
    return started


async def stored(pool: asyncpg.Pool, account_id: str, events: int, since: float | None = None) -> None:
    """Wait until every event is a row; print the rate (from `since`, or from the first row seen) and the check."""
    where = (uuid.UUID(account_id),)
    sql = "SELECT count(*) FROM requests WHERE account_id = $1"
    first_rows = 0
    while since is None:
        first_rows = await count(pool, sql, *where)
        if first_rows:
            since = time.perf_counter()
        await asyncio.sleep(0.01)
    while await count(pool, sql, *where) < events:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # polling the database is what is measured
    elapsed = time.perf_counter() - since
    await asyncio.sleep(3.0)  # a redelivered or doubled event would land now
    rows = await count(pool, sql, *where)
    rolled = await count(pool, "SELECT sum(requests) FROM usage_daily WHERE account_id = $1", *where)
    sessions = await count(pool, "SELECT sum(requests) FROM sessions WHERE account_id = $1", *where)
    verdict = "zero loss, zero doubles" if rows == rolled == sessions == events else "MISMATCH"
    rate = (events - first_rows) / elapsed
    print(f"  {events - first_rows:,} events stored in {elapsed:.1f} s = {rate:,.0f} events/s into Postgres")
    print(f"  rows {rows:,}, counted in rollups {rolled:,} and in sessions {sessions:,}: {verdict}")


async def bench_ingest(pool: asyncpg.Pool, env: dict[str, str], events: int) -> None:
    print("ingest, backlog drained by one accounting process:")
    prefix, account_id = f"ingest{os.getpid()}", str(uuid.uuid4())
    await publish(env, prefix, account_id, events)
    service = {**env, "ORQEN_NATS_PREFIX": prefix, "ORQEN_METRICS_PORT": "0"}
    service["ORQEN_ACCOUNTING_ADDR"] = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orqen_accounting",
        env=service,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await stored(pool, account_id, events)
    finally:
        process.terminate()
        await process.wait()
    print("ingest, live: one client publishing while the stack's accounting and billing consume:")
    account_id = str(uuid.uuid4())
    started = await publish(env, env["ORQEN_NATS_PREFIX"], account_id, events)
    await stored(pool, account_id, events, since=started)


async def seed(pool: asyncpg.Pool, account_id: str, rows: int) -> None:
    """`rows` requests over the last 60 days through the ledger's batch write (rollups and sessions included)."""
    ledger, prices, rng = Ledger(pool), Prices(), random.Random(2)
    start, span = dt.datetime.now(dt.UTC) - dt.timedelta(days=60), 60 * 86400
    written, began = 0, time.perf_counter()
    while written < rows:
        size = min(5000, rows - written)
        batch = sorted(start + dt.timedelta(seconds=rng.random() * span) for _ in range(size))
        await ledger.record([request_row(event(account_id, at, rng), prices) for at in batch])
        written += size
    await pool.execute("VACUUM ANALYZE requests")
    await pool.execute("ANALYZE usage_daily")
    print(f"seed: {rows:,} request rows for one account in {time.perf_counter() - began:.0f} s")


async def bench_reads(edge_url: str, api_key: str, samples: int) -> None:
    routes = [
        "/v1/account/usage/summary",
        "/v1/account/requests",
        "/v1/account/requests?model=gpt-4o&status=error",
        "/v1/account/sessions",
        "/v1/account/usage/daily",
        "/v1/account/usage/analytics/daily",
        "/v1/account/usage/analytics/latency",
        "/v1/account/usage/analytics/savings",
        "/v1/account/tools/health",
    ]
    headers = {"authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=edge_url, headers=headers, timeout=30) as client:
        print(f"{'route (1,000,000 rows for the account)':<52}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
        for route in routes:
            for _ in range(10):  # warm the connection, the auth cache and Postgres' cache
                (await client.get(route)).raise_for_status()
            timings = []
            for _ in range(samples):
                began = time.perf_counter()
                (await client.get(route)).raise_for_status()
                timings.append(time.perf_counter() - began)
            p50, p95, p99 = (percentile(timings, q) for q in (50, 95, 99))
            print(f"{route:<52}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}", flush=True)


async def run(events: int, rows: int, samples: int) -> None:
    with tempfile.TemporaryDirectory(prefix="orqen-bench-") as home:
        nowhere = "http://127.0.0.1:9"  # no provider is called
        env = stack_env({"openai": nowhere, "anthropic": nowhere, "bedrock": nowhere}, Path(home), f"acct{os.getpid()}")
        stack = Stack(StackConfig.from_env(env))
        info = await stack.start()
        service_env = stack.service_env
        pool = await create_pool(plain_postgres_url(service_env["ORQEN_DATABASE_URL"]), 4, "accounting")
        try:
            print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
            await bench_ingest(pool, service_env, events)
            account_id = str(
                await pool.fetchval("SELECT account_id FROM api_keys WHERE key_hash = $1", hash_api_key(info.api_key))
            )
            await seed(pool, account_id, rows)
            await bench_reads(info.edge_url, info.api_key, samples)
            print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
        finally:
            await pool.close()
            await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events for the ingest run")
    parser.add_argument("--rows", type=int, default=1_000_000, help="request rows of the account for the reads")
    parser.add_argument("--samples", type=int, default=200, help="timed calls per route")
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rows, args.samples))


if __name__ == "__main__":
    main()
