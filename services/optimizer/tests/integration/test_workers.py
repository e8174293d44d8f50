"""`python -m orqen_optimizer` as a group of worker processes: plans sent over several connections land in
every worker, through real gRPC and a real Redis; a worker that dies takes the group down."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import orjson
import psutil
import pytest

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, optimizer_pb2, optimizer_pb2_grpc
from orqen_common.grpc_client import Balancer, open_channel, open_channels
from orqen_common.grpc_server import ServicerContext
from orqen_common.healthcheck import health_status
from orqen_stack.procs import free_port

TOKEN = "optimizer-workers-test-token"
WORKERS = 2
CHANNELS = 16  # with 2 workers, all 16 on one worker once in 30,000 runs
POLLS = 3000  # of 0.1 s: a bound on waiting for two model loads on a busy machine, not a timing assertion


class DefaultPreferences(accounting_pb2_grpc.AccountingServicer):
    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        return accounting_pb2.RoutingPreferences(account_id=request.account_id, mode="auto", k_floor=3)


@dataclass
class Optimizer:
    parent: subprocess.Popen[bytes]
    addr: str
    metrics_url: str
    log: Path


def start_optimizer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "orqen_optimizer"], env=env, stdout=out, stderr=out)


@pytest.fixture
async def optimizer(orqen_redis_db_url: str, tmp_path: Path) -> AsyncIterator[Optimizer]:
    accounting = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(DefaultPreferences(), accounting)
    accounting_port = accounting.add_insecure_port("127.0.0.1:0")
    await accounting.start()
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ORQEN_GRPC_HOST", "ORQEN_METRICS_HOST")}
    env.update(
        ORQEN_OPTIMIZER_ADDR=f"127.0.0.1:{port}",
        ORQEN_ACCOUNTING_ADDR=f"127.0.0.1:{accounting_port}",
        ORQEN_REDIS_URL=orqen_redis_db_url,
        ORQEN_INTERNAL_TOKEN=TOKEN,
        ORQEN_METRICS_PORT=str(metrics_port),
        ORQEN_OPTIMIZER_WORKERS=str(WORKERS),
        ORQEN_LOG_LEVEL="WARNING",
        ORQEN_GRACE_SECONDS="2",
    )
    log = tmp_path / "optimizer.log"
    parent = start_optimizer(env, log)
    addr = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            for _ in range(POLLS):
                if await health_status(channel) == "ok" or parent.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert await health_status(channel) == "ok", log.read_text()
        yield Optimizer(parent, addr, f"http://127.0.0.1:{metrics_port}/metrics", log)
    finally:
        workers = psutil.Process(parent.pid).children() if parent.poll() is None else []
        parent.terminate()
        parent.wait(60)
        psutil.wait_procs(workers, 60)
        await accounting.stop(None)


def tool(name: str, description: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {}}}


TOOLS = [tool(f"tool_{i}", f"Does task number {i} of the toolbox.") for i in range(12)]


def plan_request() -> optimizer_pb2.PlanRequest:
    context = common_pb2.RequestContext(account_id=str(uuid.uuid4()))
    chat = {"messages": [{"role": "user", "content": "do task 3"}], "tools": TOOLS}
    return optimizer_pb2.PlanRequest(context=context, chat_json=orjson.dumps(chat))


def plans_by_worker(metrics: str) -> dict[str, float]:
    return {
        worker: float(value)
        for worker, value in re.findall(r'^orqen_optimizer_plans_total\{worker="(\d+)"\} (\S+)$', metrics, re.M)
    }


async def test_plans_over_several_connections_land_in_every_worker_and_a_worker_that_dies_stops_them_all(
    optimizer: Optimizer,
) -> None:
    workers = psutil.Process(optimizer.parent.pid).children()
    assert len(workers) == WORKERS
    channels = open_channels(optimizer.addr, TOKEN, CHANNELS)
    balancer = Balancer([optimizer_pb2_grpc.OptimizerStub(c) for c in channels])
    request = plan_request()

    async def plan() -> optimizer_pb2.PlanResponse:
        with balancer() as (optimizer, heard):
            answer = await optimizer.Plan(request)
            heard(answer.worker, answer.group, answer.workers)
        return answer

    try:
        answers = await asyncio.gather(*(plan() for _ in range(2 * CHANNELS)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    assert all(a.stats.tools_input == len(TOOLS) for a in answers)
    assert len({a.worker for a in answers}) == WORKERS  # each worker names itself
    assert len({(a.group, a.workers) for a in answers}) == 1 and answers[0].workers == WORKERS  # one group of 2
    # The parent serves every worker's samples on the one metrics port.
    async with httpx.AsyncClient() as http:
        by_worker = plans_by_worker((await http.get(optimizer.metrics_url)).text)
    assert set(by_worker) == {str(i) for i in range(WORKERS)} and all(by_worker.values()), by_worker
    assert sum(by_worker.values()) == 2 * CHANNELS

    # A crashed worker stops the group: `orqen up`, Kubernetes or compose restarts it whole.
    killed, other = workers
    killed.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(optimizer.parent.wait, 60) == 1, optimizer.log.read_text()
    _, alive = await asyncio.to_thread(psutil.wait_procs, [other], 60)
    assert alive == []


async def test_a_caller_with_one_connection_opens_more_until_every_worker_answered(optimizer: Optimizer) -> None:
    channels = [open_channel(optimizer.addr, TOKEN, own_connection=True)]

    def more() -> optimizer_pb2_grpc.OptimizerAsyncStub:
        channels.append(open_channel(optimizer.addr, TOKEN, own_connection=True))
        return optimizer_pb2_grpc.OptimizerStub(channels[-1])

    balancer = Balancer([optimizer_pb2_grpc.OptimizerStub(channels[0])], more=more, most=64)
    request = plan_request()
    reached: set[int] = set()
    try:
        # Each new connection reaches the worker not heard from with odds 1/2: 63 of them all miss it
        # once in 10^19 runs.
        for _ in range(64):
            with balancer() as (stub, heard):
                answer = await stub.Plan(request)
                heard(answer.worker, answer.group, answer.workers)
            reached.add(answer.worker)
            if len(reached) == WORKERS:
                break
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    assert len(reached) == WORKERS and len(channels) == len(balancer.items)
