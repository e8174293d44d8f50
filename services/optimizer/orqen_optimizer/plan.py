"""The optimization plan of one chat request.

Every tool is forwarded (tool routing is not enabled yet: mode "passthrough"), each with
its schema compressed so that it accepts exactly the same calls with fewer tokens
(orqen_optimizer.schemas); a long conversation has its older tool outputs shrunk
(orqen_optimizer.context). A request whose `tools` is not a list is forwarded as it is.
"""

from __future__ import annotations

from typing import Any

from orqen.v1 import optimizer_pb2
from orqen_optimizer.context import compress_context
from orqen_optimizer.schemas import compress_tool

PASSTHROUGH = "passthrough"


def plan(chat: dict[str, Any]) -> tuple[dict[str, Any], optimizer_pb2.PlanStats, optimizer_pb2.RoutingTrace]:
    stats = optimizer_pb2.PlanStats(routing=PASSTHROUGH)
    trace = optimizer_pb2.RoutingTrace(mode=PASSTHROUGH, k_reason="no tools")
    forwarded = chat
    tools = chat.get("tools")
    if isinstance(tools, list) and tools:
        stats.tools_input = stats.tools_output = trace.k = len(tools)
        trace.k_reason = "routing not enabled"
        forwarded = {**forwarded, "tools": [compress_tool(t) for t in tools]}
    context = compress_context(chat.get("messages"))
    if context.changed:
        forwarded = {**forwarded, "messages": context.messages}
        stats.context_compressed = True
        stats.ctx_tokens_in, stats.ctx_tokens_out = context.tokens_in, context.tokens_out
    return forwarded, stats, trace
