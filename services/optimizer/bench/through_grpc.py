"""Plan latency through real gRPC against a group of optimizer worker processes (part of `make bench-optimizer`).

The optimizer runs as `make up` runs it (`python -m orqen_optimizer`, ORQEN_OPTIMIZER_WORKERS
worker processes on one port), its tool vectors in a real Redis, filled by the benchmark's own
indexing, so every worker fetches them instead of embedding; accounting is a stand-in that
answers every account's preferences with the defaults and no A/B control share, as the
in-process measurement plans. The client calls over as many connections as the edge opens
(ORQEN_OPTIMIZER_CHANNELS' default), each plan to the worker with the fewest in flight as the
edge sends it (Balancer), each call timed from the client: what the edge
waits for, serialisation and the network included. Each set of requests (a new tool list per
plan; agents resending theirs) is timed at 1, 4 and 16 plans at once after a warm-up round.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import orjson
import psutil

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, optimizer_pb2, optimizer_pb2_grpc
from orqen_common.grpc_client import Balancer, open_channels
from orqen_common.healthcheck import health_status
from orqen_edge.settings import EdgeSettings
from orqen_optimizer.policy import KEYWORD_BUSY
from orqen_stack.procs import free_port

TOKEN = "bench-internal-token"
CHANNELS = EdgeSettings.model_fields["optimizer_channels"].default


class DefaultPreferences(accounting_pb2_grpc.AccountingServicer):
    """Accounting, for the optimizer: every account has the default preferences, without A/B control traffic."""

    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> accounting_pb2.RoutingPreferences:
        return accounting_pb2.RoutingPreferences(
            account_id=request.account_id, mode="auto", k_floor=3, ab_control_share=0.0
        )


def start_optimizer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "orqen_optimizer"], env=env)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process and its children so far."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


@asynccontextmanager
async def optimizer_group(workers: int, redis_url: str, accounting_addr: str) -> AsyncIterator[tuple[str, int]]:
    """`python -m orqen_optimizer` with `workers` worker processes, once it is SERVING; its address and pid."""
    addr = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("ORQEN_GRPC_HOST", "ORQEN_METRICS_HOST")}
    env.update(
        ORQEN_OPTIMIZER_ADDR=addr,
        ORQEN_ACCOUNTING_ADDR=accounting_addr,
        ORQEN_REDIS_URL=redis_url,
        ORQEN_INTERNAL_TOKEN=TOKEN,
        ORQEN_METRICS_PORT="0",
        ORQEN_OPTIMIZER_WORKERS=str(workers),
        ORQEN_LOG_LEVEL="WARNING",
    )
    process = start_optimizer(env)
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            while await health_status(channel) != "ok":
                if process.poll() is not None:
                    raise RuntimeError(f"the optimizer exited with code {process.returncode}")
                await asyncio.sleep(0.2)
        yield addr, process.pid
    finally:
        process.terminate()
        process.wait(60)


async def timed_plans(
    balancer: Balancer[optimizer_pb2_grpc.OptimizerAsyncStub],
    requests: list[optimizer_pb2.PlanRequest],
    concurrency: int,
    workers: Counter[int] | None = None,
    modes: Counter[str] | None = None,
    deadline_ms: float | None = None,
) -> list[float]:
    """Milliseconds of each call, `concurrency` of them in flight at any time; `workers`: counts the plans
    each worker made, `modes` the plans of each routing mode ("failed open": past `deadline_ms`, which
    each call carries as the edge's do, so the optimizer knows how long its caller waits)."""
    pending = iter(requests)
    timings: list[float] = []
    timeout = None if deadline_ms is None else deadline_ms / 1000

    async def caller() -> None:
        for request in pending:  # shared by every caller: each request is sent once
            started = time.perf_counter()
            with balancer() as (optimizer, heard):  # as the edge calls
                try:
                    answer = await optimizer.Plan(request, timeout=timeout)
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                    answer = None
                else:
                    heard(answer.worker, answer.group, answer.workers)
            timings.append((time.perf_counter() - started) * 1000)
            if answer is not None and workers is not None:
                workers[answer.worker] += 1
            if modes is not None:
                modes["failed open" if answer is None else answer.stats.routing] += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return timings


def measure(
    lists: dict[str, list[dict[str, Any]]],
    catalogue: list[dict[str, Any]],
    worker_counts: list[int],
    deadline_ms: float,
    redis_url: str,
) -> None:
    """Print p50/p95/p99 and the share past the deadline at 1, 4 and 16 plans at once, per worker count,
    for each set of requests in `lists` (by its label)."""
    asyncio.run(_measure(lists, catalogue, worker_counts, deadline_ms, redis_url))


async def _measure(
    lists: dict[str, list[dict[str, Any]]],
    catalogue: list[dict[str, Any]],
    worker_counts: list[int],
    deadline_ms: float,
    redis_url: str,
) -> None:
    context = common_pb2.RequestContext(account_id=str(uuid.uuid4()))

    def plan_request(chat: dict[str, Any]) -> optimizer_pb2.PlanRequest:
        return optimizer_pb2.PlanRequest(context=context, chat_json=orjson.dumps(chat))

    everything = plan_request({"messages": [{"role": "user", "content": "warm up"}], "tools": catalogue})
    accounting = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(DefaultPreferences(), accounting)
    accounting_port = accounting.add_insecure_port("127.0.0.1:0")
    await accounting.start()
    print(
        f"\nthrough gRPC: `python -m orqen_optimizer` with N worker processes, 500 cached tools, {CHANNELS} "
        f"connections balanced by worker, deadline {deadline_ms} ms:"
    )
    try:
        for workers in worker_counts:
            async with optimizer_group(workers, redis_url, f"127.0.0.1:{accounting_port}") as (addr, pid):
                channels = open_channels(addr, TOKEN, CHANNELS)
                stubs = Balancer([optimizer_pb2_grpc.OptimizerStub(c) for c in channels])
                # Each connection's worker indexes the whole catalogue (vectors from Redis).
                await asyncio.gather(*(stub.Plan(everything) for stub in stubs.items))
                for label, requests in lists.items():
                    print(f"  {label}:")
                    timed = [plan_request(r) for r in requests] * 2
                    await timed_plans(stubs, timed[: len(requests)], 4)  # a warm-up round
                    for concurrency in (1, 4, 16):
                        await _timed_row(stubs, timed, workers, concurrency, deadline_ms, pid)
                await asyncio.gather(*(c.close() for c in channels))
    finally:
        await accounting.stop(None)


async def _timed_row(
    stubs: Balancer[optimizer_pb2_grpc.OptimizerAsyncStub],
    timed: list[optimizer_pb2.PlanRequest],
    workers: int,
    concurrency: int,
    deadline_ms: float,
    pid: int,
) -> None:
    load = os.getloadavg()[0]
    server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
    spread: Counter[int] = Counter()
    modes: Counter[str] = Counter()
    timings = await timed_plans(stubs, timed, concurrency, spread, modes, deadline_ms)
    # CPU per plan does not depend on what else runs on the machine, latency does.
    server_ms = (cpu_seconds(pid) - server_cpu) * 1000 / len(timings)
    client_ms = (time.process_time() - client_cpu) * 1000 / len(timings)
    q = np.percentile(timings, [50, 95, 99])
    late = modes["failed open"] / len(timings)
    label = f"{workers} worker{'s' if workers > 1 else ' '}, {concurrency:>2} at once"
    print(
        f"    {label}: p50 {q[0]:6.1f} ms  "
        f"p95 {q[1]:6.1f} ms  p99 {q[2]:6.1f} ms  past the deadline {late:5.1%}  "
        f"by keywords, busy {modes[KEYWORD_BUSY] / len(timings):5.1%}  "
        f"CPU per plan: optimizer {server_ms:4.1f} ms, client {client_ms:4.1f} ms  "
        f"plans per worker {'/'.join(str(n) for n in sorted(spread.values()))}  "
        f"({len(timings)} plans, load average {load:.2f} before)"
    )
