"""A busy optimizer worker ranks by keywords in time rather than let its callers fail open: through real gRPC."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, optimizer_pb2, optimizer_pb2_grpc
from orqen_common.auth import Principal
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServerInterceptor, ServicerContext
from orqen_common.worker_group import WorkerLink
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import RoutingPolicies, RoutingPolicy
from orqen_optimizer.servicer import OptimizerServicer
from orqen_optimizer.turns import ModelTurns

TOKEN = "busy-plans-test-token"
WORKER = WorkerLink(index=7, count=1, group_id=1, ready_fd=-1, group_fd=-1)
# A deadline far beyond any plan here: how long a busy plan waits is set by the held turn, not by the machine.
DEADLINE_SECONDS = 2.0
POLLS = 600  # of 0.05 s: a bound on waiting for a thread to end on a busy machine, not a timing assertion


class SemanticPreferences(accounting_pb2_grpc.AccountingServicer):
    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        return accounting_pb2.RoutingPreferences(account_id=request.account_id, mode="semantic", k_floor=1)


async def no_api_keys(key: str) -> Principal | None:
    return None


def tool(name: str, description: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {}}}


TOOLS = [
    tool("get_weather", "Current weather for a city."),
    tool("convert_currency", "Convert an amount between currencies."),
    tool("book_flight", "Book a flight between two airports."),
    tool("send_email", "Send an email to a recipient."),
    tool("search_hotels", "Find hotels in a city for given dates."),
    tool("translate_text", "Translate text into another language."),
    tool("get_stock_price", "Latest price of a stock ticker."),
    tool("create_calendar_event", "Create an event in the user's calendar."),
    tool("calculate_route", "Driving directions between two addresses."),
    tool("set_reminder", "Remind the user at a time."),
    *(tool(f"task_{i}", f"Does task number {i} of the toolbox.") for i in range(20)),
]


@dataclass
class Worker:
    optimizer: optimizer_pb2_grpc.OptimizerStub
    turns: ModelTurns
    planner: Planner


@pytest.fixture
async def worker(orqen_redis_db_url: str) -> AsyncIterator[Worker]:
    accounting = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(SemanticPreferences(), accounting)
    accounting_port = accounting.add_insecure_port("127.0.0.1:0")
    await accounting.start()
    accounting_channel = grpc.aio.insecure_channel(f"127.0.0.1:{accounting_port}")
    redis = Redis.from_url(orqen_redis_db_url)
    policies = RoutingPolicies(
        accounting_pb2_grpc.AccountingStub(accounting_channel), redis, RoutingPolicy(), ttl_seconds=300
    )
    planner = Planner(ToolIndex(), max_new_tools=100, rng=lambda: 1.0)  # no A/B control traffic
    turns = ModelTurns(1)
    server = grpc.aio.server(interceptors=[ServerInterceptor("optimizer", TOKEN, no_api_keys)])
    optimizer_pb2_grpc.add_OptimizerServicer_to_server(OptimizerServicer(planner, policies, WORKER, turns), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", TOKEN)
    try:
        yield Worker(optimizer_pb2_grpc.OptimizerStub(channel), turns, planner)
    finally:
        await channel.close()
        await server.stop(None)
        planner.close()
        await redis.aclose()
        await accounting_channel.close()
        await accounting.stop(None)


def plan_request(ask: str) -> optimizer_pb2.PlanRequest:
    chat = {"messages": [{"role": "user", "content": ask}], "tools": TOOLS}
    context = common_pb2.RequestContext(account_id=str(uuid.uuid4()))
    return optimizer_pb2.PlanRequest(context=context, chat_json=orjson.dumps(chat))


@asynccontextmanager
async def turn_held(turns: ModelTurns) -> AsyncIterator[None]:
    """The worker's one turn at the model held, as by a plan running it, while the block runs."""
    release, started = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with turns.turn(None):
            started.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await started.wait()
    try:
        yield
    finally:
        release.set()
        await holder


def busy_plans() -> float:
    return REGISTRY.get_sample_value("orqen_optimizer_busy_plans_total", {"worker": str(WORKER.index)}) or 0.0


async def test_a_plan_whose_turn_would_come_too_late_is_ranked_by_keywords_and_answers_in_time(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_the_loop: list[bool] = []  # per plan: made on the event loop's thread, or in a worker thread
    plan_json = worker.planner.plan_json

    def recorded(*args: Any, **kwargs: Any) -> Any:
        on_the_loop.append(threading.current_thread() is threading.main_thread())
        return plan_json(*args, **kwargs)

    monkeypatch.setattr(worker.planner, "plan_json", recorded)
    ask = "What is Apple's stock trading at right now?"
    first = await worker.optimizer.Plan(plan_request(ask), timeout=DEADLINE_SECONDS)
    assert first.stats.routing == "semantic"  # a free turn: the model ran (and indexed the tools)
    busy_before = busy_plans()
    async with turn_held(worker.turns):
        answer = await worker.optimizer.Plan(plan_request(ask), timeout=DEADLINE_SECONDS)
    assert answer.stats.routing == answer.trace.mode == "keyword_busy"
    assert answer.trace.k_reason.startswith("the model had no turn in time, ranked by keywords")
    kept = [t["function"]["name"] for t in orjson.loads(answer.chat_json)["tools"]]
    assert "get_stock_price" in kept and len(kept) < len(TOOLS)
    assert busy_plans() == busy_before + 1
    again = await worker.optimizer.Plan(plan_request(ask), timeout=DEADLINE_SECONDS)
    assert again.stats.routing == "semantic"  # the turn is free again
    # The model's plans in a thread (the loop answers meanwhile); the busy one, all GIL, on the loop at once.
    assert on_the_loop == [False, True, False]


async def test_a_plan_without_a_deadline_waits_for_its_turn(worker: Worker) -> None:
    async with turn_held(worker.turns):
        waiting = asyncio.ensure_future(worker.optimizer.Plan(plan_request("Translate this into French.")))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # nobody waits for it with a deadline: it waits for the model
    answer = await waiting
    assert answer.stats.routing == "semantic"


async def test_a_plan_whose_caller_gave_up_keeps_its_turn_until_its_thread_ends(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, entered = threading.Event(), threading.Event()
    plan_json = worker.planner.plan_json

    def held_up(*args: Any) -> Any:  # a plan running the model for longer than its caller waits
        entered.set()
        assert release.wait(60)
        return plan_json(*args)

    monkeypatch.setattr(worker.planner, "plan_json", held_up)
    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await worker.optimizer.Plan(plan_request("Convert 200 EUR to USD."), timeout=0.5)
    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and entered.is_set()
    await asyncio.sleep(0.5)  # the server has seen the cancellation: its thread still runs, so it keeps the turn
    assert worker.turns.held == 1
    release.set()
    for _ in range(POLLS):
        if not worker.turns.held:
            break
        await asyncio.sleep(0.05)
    assert worker.turns.held == 0
    monkeypatch.undo()
    answer = await worker.optimizer.Plan(plan_request("Convert 200 EUR to USD."), timeout=DEADLINE_SECONDS)
    assert answer.stats.routing == "semantic"
