"""The orqen.v1.Optimizer gRPC service."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import Counter

from orqen.v1 import optimizer_pb2, optimizer_pb2_grpc
from orqen_common.context import account_scope
from orqen_common.errors import invalid_request
from orqen_common.grpc_server import ServicerContext
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import DEFAULT_POLICY, RoutingPolicies
from orqen_optimizer.tool_router import SMALL_TOOLSET

# Per worker process: shows how evenly the callers' connections spread over the group.
PLANS = Counter("orqen_optimizer_plans_total", "Plans made, by worker process of the optimizer.", ["worker"])


class OptimizerServicer(optimizer_pb2_grpc.OptimizerServicer):
    def __init__(self, planner: Planner, policies: RoutingPolicies, worker: int = 0) -> None:
        self._planner = planner
        self._policies = policies
        self._plans = PLANS.labels(str(worker))

    async def Plan(self, request: optimizer_pb2.PlanRequest, context: ServicerContext) -> optimizer_pb2.PlanResponse:
        account_id = account_scope(request.context.account_id)
        try:
            chat = orjson.loads(request.chat_json)
        except orjson.JSONDecodeError:
            raise invalid_request("chat_json is not valid JSON.") from None
        if not isinstance(chat, dict):
            raise invalid_request("chat_json must be a chat request object.")
        # Only a toolset the router may prune needs the account's policy: other plans read no Redis for it.
        tools = chat.get("tools")
        routable = isinstance(tools, list) and len(tools) > SMALL_TOOLSET
        policy = await self._policies.get(account_id) if routable else DEFAULT_POLICY
        # Embedding and scoring hold the CPU: a worker thread keeps the event loop answering.
        forwarded, stats, trace = await asyncio.to_thread(self._planner.plan, chat, policy)
        body = request.chat_json if forwarded is chat else orjson.dumps(forwarded)
        self._plans.inc()
        return optimizer_pb2.PlanResponse(chat_json=body, stats=stats, trace=trace)
