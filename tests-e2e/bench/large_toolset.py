"""A large, real tool list for `make bench ARGS="--tools 500"`: BFCL's live function definitions.

No catalogue of MCP servers' tool definitions ships in a package installed here, so the list is
made of the closest real thing that does: the function definitions of the "live" categories of
the Berkeley Function Calling Leaderboard (`bfcl-eval`, installed by `make install`, Apache-2.0),
which its users contributed from the APIs their own agents call: long descriptions, enums,
nested objects, the shapes MCP servers advertise. They are read from the installed package,
never downloaded, distinct by name, in the data files' order, and converted to OpenAI tools the
way the optimizer's benchmark converts them (orqen_optimizer.bfcl). 500 of them are about
390 KB of JSON: an agent wired to a few dozen MCP servers.
"""

from __future__ import annotations

from typing import Any

from orqen_optimizer import bfcl

LIVE = ("live_multiple", "live_simple", "live_parallel", "live_parallel_multiple")


def large_toolset(count: int) -> tuple[list[dict[str, Any]], str]:
    """`count` distinct live tools and a question of BFCL's own that some of them answer.

    The question is that of the first live case whose tools are all in the list.
    """
    tools: dict[str, dict[str, Any]] = {}
    cases = [case for category in LIVE for case in bfcl.cases(category)]
    for case in cases:
        for tool in case.tools:
            if len(tools) < count:
                tools.setdefault(tool["function"]["name"], tool)
    if len(tools) < count:
        raise SystemExit(f"BFCL's live categories define {len(tools)} distinct tools, fewer than {count}")
    question = next(c.question for c in cases if c.needed and all(t["function"]["name"] in tools for t in c.tools))
    return list(tools.values()), question
