"""The tool-routing modes an account can choose: accounting checks a choice against them, the
optimizer applies them, the dashboard offers them.

auto: the router picks the keyword fast path, semantic, intent-guided or heuristic routing per
request; semantic: always fused scores; keyword: BM25 only; passthrough: every tool is forwarded.
"""

ROUTING_MODES = ("auto", "semantic", "keyword", "passthrough")
