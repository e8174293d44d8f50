"""The orqen.v1.Optimizer gRPC service."""

from __future__ import annotations

import asyncio
import random

import orjson
from prometheus_client import Counter

from orqen.v1 import optimizer_pb2, optimizer_pb2_grpc
from orqen_common.context import account_scope
from orqen_common.errors import invalid_request
from orqen_common.grpc_server import ServicerContext
from orqen_common.worker_group import WorkerLink
from orqen_optimizer.chat_json import ChatJson, MalformedChatError
from orqen_optimizer.plan import JsonPlan, Planner
from orqen_optimizer.policy import DEFAULT_POLICY, KEYWORD, PASSTHROUGH, RoutingPolicies, RoutingPolicy
from orqen_optimizer.tool_router import SMALL_TOOLSET
from orqen_optimizer.turns import ModelTurns

# Per worker process: shows how evenly the callers' connections spread over the group.
PLANS = Counter("orqen_optimizer_plans_total", "Plans made, by worker process of the optimizer.", ["worker"])
BUSY_PLANS = Counter(
    "orqen_optimizer_busy_plans_total",
    "Plans ranked by keywords because the embedding model had no turn for them before their deadline.",
    ["worker"],
)


class OptimizerServicer(optimizer_pb2_grpc.OptimizerServicer):
    def __init__(self, planner: Planner, policies: RoutingPolicies, worker: WorkerLink, turns: ModelTurns) -> None:
        """`turns`: the worker's turns at the embedding model."""
        self._planner = planner
        self._policies = policies
        self._turns = turns
        self._plans = PLANS.labels(str(worker.index))
        self._busy = BUSY_PLANS.labels(str(worker.index))
        # Names this process, its group and the group's size in every answer, so that callers spread
        # their calls over the workers by them (orqen_common.grpc_client.Balancer).
        self._worker_id = random.SystemRandom().getrandbits(63)
        self._group_id, self._workers = worker.group_id, worker.count

    async def Plan(self, request: optimizer_pb2.PlanRequest, context: ServicerContext) -> optimizer_pb2.PlanResponse:
        account_id = account_scope(request.context.account_id)
        try:
            # Skimmed, not parsed: the tools stay JSON texts, the keys of their cached facts.
            chat = ChatJson.parse(request.chat_json)
        except MalformedChatError as err:
            raise invalid_request(str(err)) from None
        # Only a toolset the router may prune needs the account's policy: other plans read no Redis for it.
        routable = chat.tools is not None and len(chat.tools) > SMALL_TOOLSET
        policy = await self._policies.get(account_id) if routable else DEFAULT_POLICY
        embeds = routable and self._planner.routes and policy.mode not in (PASSTHROUGH, KEYWORD)
        async with self._turns.turn(context.time_remaining(), needed=embeds) as busy:
            try:
                if busy:
                    # Ranked by keywords, the plan holds the GIL from start to end (a few ms): run at once on
                    # the event loop rather than in a thread, where it would share the GIL with the other
                    # plans' threads and stretch them all, the model's plans included (docs/performance.md).
                    # Its one wait, the learned usage's Redis read, is bounded (ORQEN_LEARNED_TOOLS_TIMEOUT_MS).
                    body, stats, trace = self._planner.plan_json(chat, policy, account_id, busy=True)
                else:
                    body, stats, trace = await self._in_thread(chat, policy, account_id)
            except orjson.JSONDecodeError:  # a tool that orjson refuses (a lone surrogate, a 65-bit integer)
                raise invalid_request("chat_json is not valid JSON.") from None
        self._plans.inc()
        if busy:
            self._busy.inc()
        return optimizer_pb2.PlanResponse(
            chat_json=request.chat_json if body is None else body,
            stats=stats,
            trace=trace,
            worker=self._worker_id,
            group=self._group_id,
            workers=self._workers,
        )

    async def _in_thread(self, chat: ChatJson, policy: RoutingPolicy, account_id: str) -> JsonPlan:
        """The plan, made in a worker thread: embedding and scoring hold the CPU while the event loop answers."""
        planning = asyncio.ensure_future(asyncio.to_thread(self._planner.plan_json, chat, policy, account_id))
        try:
            return await asyncio.shield(planning)
        except asyncio.CancelledError:
            # The caller gave up, but a thread cannot be stopped: the plan keeps its turn until its
            # thread ends, so that no more than the worker's turns run the model at once.
            await asyncio.wait({planning})
            if not planning.cancelled():
                planning.exception()  # retrieved: nobody is left to read it
            raise
