"""The Berkeley Function Calling Leaderboard data shipped in the `bfcl-eval` package (Apache-2.0).

Only the data files are read (the package is installed without its dependencies); the
functions are turned into OpenAI-format tools the way BFCL's own OpenAI handler does:
its Python/Java/JavaScript type names become JSON Schema types, and dots in function
names become underscores (OpenAI names allow letters, digits, '_' and '-').
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

# The single-turn categories: one user question, the functions offered, the calls expected.
SINGLE_TURN = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
VERSION = "BFCL_v4"

_TYPES = {
    "dict": "object", "object": "object", "HashMap": "object", "Hashtable": "object", "Map": "object",
    "list": "array", "array": "array", "tuple": "array", "Array": "array", "ArrayList": "array",
    "Queue": "array", "Stack": "array", "Set": "array", "LinkedList": "array",
    "float": "number", "number": "number", "double": "number", "Double": "number",
    "integer": "integer", "int": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "Bigint": "integer", "bigint": "integer", "Long": "integer", "Integer": "integer",
    "string": "string", "String": "string", "char": "string", "str": "string",
    "boolean": "boolean", "bool": "boolean", "Boolean": "boolean",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Case:
    """One question, the tools offered with it, and the names of the tools its answer calls."""

    id: str
    category: str
    question: str
    tools: list[dict[str, Any]]
    needed: frozenset[str]


def tool_name(name: str) -> str:
    return name.replace(".", "_")


def to_json_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema (unknown types, e.g. "any", accept anything)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            mapped = _TYPES.get(value) if isinstance(value, str) else None
            if mapped:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif key == "optional":  # BFCL's own marker, not JSON Schema
            continue
        else:
            out[key] = value
    return out


def to_tool(function: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool_name(function["name"]),
            "description": function.get("description", ""),
            "parameters": to_json_schema(function.get("parameters") or {"type": "object", "properties": {}}),
        },
    }


def json_lines(path: Any) -> Iterator[dict[str, Any]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def cases(category: str) -> list[Case]:
    """The category's questions with their tools and the tools their expected answers call."""
    data = resources.files("bfcl_eval") / "data"
    answers = {a["id"]: a["ground_truth"] for a in json_lines(data / "possible_answer" / f"{VERSION}_{category}.json")}
    found = []
    for entry in json_lines(data / f"{VERSION}_{category}.json"):
        turns = entry["question"][0]
        question = " ".join(t["content"] for t in turns if t.get("role") == "user")
        needed = frozenset(tool_name(name) for call in answers.get(entry["id"], []) for name in call)
        tools = [to_tool(f) for f in entry["function"]]
        found.append(Case(entry["id"], category, question, tools, needed))
    return found


# BFCL's multi-turn categories: the classes whose tools a conversation may use, and their files.
MULTI_TURN_CLASSES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One user turn of a multi-turn conversation and the calls its expected answer makes, in order."""

    question: str
    calls: list[str]  # the function names called, in order (a name may repeat)


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    turns: list[Turn]
    classes: list[str]


def multi_turn_tools() -> list[dict[str, Any]]:
    """Every multi-turn class's tools, pooled in the classes' order (128 tools, no name shared)."""
    docs = resources.files("bfcl_eval") / "data" / "multi_turn_func_doc"
    return [to_tool(f) for name in MULTI_TURN_CLASSES.values() for f in json_lines(docs / f"{name}.json")]


def multi_turn_conversations(category: str = "multi_turn_base") -> list[Conversation]:
    """The category's conversations: per turn, the user's message and the names its expected calls use."""
    data = resources.files("bfcl_eval") / "data"
    answers = {a["id"]: a["ground_truth"] for a in json_lines(data / "possible_answer" / f"{VERSION}_{category}.json")}
    found = []
    for entry in json_lines(data / f"{VERSION}_{category}.json"):
        turns = []
        for messages, calls in zip(entry["question"], answers[entry["id"]], strict=True):
            question = " ".join(m["content"] for m in messages if m.get("role") == "user")
            turns.append(Turn(question, [tool_name(call.split("(", 1)[0].strip()) for call in calls]))
        found.append(Conversation(entry["id"], turns, list(entry["involved_classes"])))
    return found
