"""The tool-routing modes and how they are spelled, where the optimizer, accounting and the dashboard
all read them.

auto: the router picks the keyword fast path, semantic, intent-guided or heuristic routing per
request; semantic: always fused scores; keyword: BM25 only; passthrough: every tool is forwarded.
Accounting checks an account's choice against ROUTING_MODES, the optimizer applies it, the
dashboard offers it.
"""

from __future__ import annotations

ROUTING_MODES = ("auto", "semantic", "keyword", "passthrough")

# A/B control traffic: every tool was forwarded and the router's decision only recorded, so the
# tools the model then calls measure the router's recall. The mode reads "<mode>_ab_ctrl" in plan
# stats, request logs and x-orqen-routing.
AB_CONTROL_SUFFIX = "_ab_ctrl"
