"""The optimization plan of one chat request.

This first version forwards the payload unchanged and reports what it saw; tool routing
and compression plug in here and keep the same contract.
"""

from __future__ import annotations

from typing import Any

from orqen.v1 import optimizer_pb2

PASSTHROUGH = "passthrough"


def plan(chat: dict[str, Any]) -> tuple[dict[str, Any], optimizer_pb2.PlanStats, optimizer_pb2.RoutingTrace]:
    tools = chat.get("tools") or []
    count = len(tools) if isinstance(tools, list) else 0
    stats = optimizer_pb2.PlanStats(tools_input=count, tools_output=count, routing=PASSTHROUGH)
    trace = optimizer_pb2.RoutingTrace(mode=PASSTHROUGH, k=count, k_reason="routing not enabled")
    return chat, stats, trace
