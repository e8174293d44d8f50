"""A realistic agent workload for the demo, replayed through the three official SDKs.

Agents here are tool-heavy: each conversation offers the tools of a BFCL question (the data the
optimizer's benchmark uses) among dozens of other BFCL tools, asks the question, gets the
model's tool calls, answers them with tool output and asks the next question, for a few rounds,
all under one `X-Orqen-Session-Id`. The tool outputs are bulky log-like text, so the longer
conversations cross the context-compression threshold. Some conversations meet failing
upstreams: a 503 the first time (dispatch retries), a provider that always answers 500 (the
account's fallback chain answers), a 400 that no retry fixes (an error in the request log).

The fake providers answer by the shared scenario (fakes/scenario.py): a user turn ending in
`call NAME {json}` gets that tool call back, a turn of tool results gets "results: ...".
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anthropic
import botocore.exceptions
import openai

from orqen_optimizer import bfcl
from sdk_clients import SDK, AnthropicSDK, Ask, BedrockSDK, OpenAISDK, ToolCall, Turn

# Models per SDK; each SDK can reach every provider, so the mix crosses formats too.
MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "orqen/cheap"],
    "anthropic": ["claude-haiku-4-5", "claude-sonnet-4-6", "gpt-4o-mini"],
    "bedrock": ["bedrock/anthropic.claude-3-haiku-20240307-v1:0", "gpt-4o-mini", "claude-haiku-4-5"],
}
# What the account's routing preferences fall back to when a provider keeps failing.
FALLBACK_MODEL = "claude-haiku-4-5"
TOOLS_OFFERED = 40
CATEGORIES = ("multiple", "parallel_multiple", "live_multiple")


@dataclass(frozen=True)
class Conversation:
    session_id: str
    sdk: str
    model: str
    questions: list[bfcl.Case]
    tools: list[dict[str, Any]]
    stream: bool
    # How an upstream fails in this conversation's first request, if it does.
    failure: str = ""


def conversations(sessions: int, seed: int = 15) -> list[Conversation]:
    """`sessions` conversations over the three SDKs, with the failures and long contexts described above."""
    rng = random.Random(seed)
    cases = [c for category in CATEGORIES for c in bfcl.cases(category) if c.needed and len(c.tools) > 1]
    rng.shuffle(cases)
    pool = {t["function"]["name"]: t for c in cases[:200] for t in c.tools}
    sdks = itertools.cycle(MODELS)
    failures = itertools.cycle(["", "", "", "retry", "", "fallback", "", "", "error", ""])
    found = []
    for index in range(sessions):
        sdk = next(sdks)
        questions = [cases[(index * 5 + i) % len(cases)] for i in range(rng.randint(2, 5))]
        own = {t["function"]["name"]: t for q in questions for t in q.tools}
        others = rng.sample(sorted(set(pool) - set(own)), max(0, TOOLS_OFFERED - len(own)))
        tools = list(own.values()) + [pool[name] for name in others]
        rng.shuffle(tools)
        found.append(
            Conversation(
                session_id=f"demo-{sdk}-agent-{index:03d}",
                sdk=sdk,
                model=rng.choice(MODELS[sdk]),
                questions=questions,
                tools=tools,
                stream=rng.random() < 0.3,
                failure=next(failures) if sdk != "bedrock" else "",
            )
        )
    return found


def failing_model(conversation: Conversation) -> str:
    """The model name that makes the fake provider fail as planned (fakes/scenario.py)."""
    unique = conversation.session_id  # the fakes count flaky failures per exact model name
    return {
        "retry": f"gpt-4o-mini-fake-flaky-503-1-{unique}",
        "fallback": "gpt-fake-500",
        "error": f"gpt-4o-mini-fake-flaky-400-1-{unique}",
    }[conversation.failure]


def example(schema: Any) -> Any:
    """A value that fits a BFCL parameter schema (enough for the model's tool call to look real)."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example(properties[name]) for name in schema.get("required", []) if name in properties}
    if kind == "array":
        return [example(schema.get("items"))]
    return {"integer": 3, "number": 2.5, "boolean": True}.get(kind or "", "example")


def tool_output(name: str, arguments: dict[str, Any], rng: random.Random) -> str:
    """A tool's answer as agents see them: a JSON header and many lines of records."""
    rows = "\n".join(
        f"{i:04d} {name} status=ok latency_ms={rng.randint(5, 900)} shard={rng.choice('abcdef')} "
        f"detail={rng.getrandbits(64):016x}"
        for i in range(rng.randint(20, 120))
    )
    return json.dumps({"tool": name, "arguments": arguments, "ok": True}) + "\n" + rows


def _sdk_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    return {"name": function["name"], "description": function["description"], "schema": function["parameters"]}


def replay(conversation: Conversation, sdk: SDK) -> Counter[str]:
    """Play one conversation through `sdk`; counts of requests by outcome."""
    rng = random.Random(conversation.session_id)
    outcomes: Counter[str] = Counter()
    turns: list[Turn] = []
    tools = [_sdk_tool(t) for t in conversation.tools]
    headers = {"X-Orqen-Session-Id": conversation.session_id}
    for number, question in enumerate(conversation.questions):
        needed = sorted(question.needed)[:2]
        by_name = {t["function"]["name"]: t for t in question.tools}
        calls = " ".join(
            f"call {name} {json.dumps(example(by_name[name]['function']['parameters']))}"
            for name in needed
            if name in by_name
        )
        turns.append(Turn("user", f"{question.question}\n\n{calls}"))
        model = failing_model(conversation) if number == 0 and conversation.failure else conversation.model
        ask = Ask(model, list(turns), tools=tools, stream=conversation.stream, headers=headers, max_tokens=400)
        try:
            answer = sdk.ask(ask)
        except (openai.APIStatusError, anthropic.APIStatusError, botocore.exceptions.ClientError):
            outcomes["failed"] += 1
            turns.pop()
            continue
        outcomes["answered"] += 1
        if not answer.tool_calls:
            turns.append(Turn("assistant", answer.text or "ok"))
            continue
        # The fakes number their calls call_0, call_1... in every answer; real providers' ids are unique
        # within a conversation (Anthropic refuses repeats), so the history gets ids of its own.
        calls = [ToolCall(f"call_{number}_{i}", c.name, c.input) for i, c in enumerate(answer.tool_calls)]
        turns.append(Turn("assistant", answer.text, tool_calls=calls))
        turns.append(Turn("tool_results", results=[(c.id, tool_output(c.name, c.input, rng)) for c in calls]))
        final = sdk.ask(Ask(conversation.model, list(turns), tools=tools, headers=headers, max_tokens=400))
        outcomes["answered"] += 1
        turns.append(Turn("assistant", final.text or "done"))
    return outcomes


def run(edge_url: str, tls_url: str, cert_path: str, api_key: str, sessions: int, workers: int = 4) -> Counter[str]:
    """Replay `sessions` conversations, `workers` at a time; counts of requests by outcome."""
    clients: dict[str, SDK] = {
        "openai": OpenAISDK(edge_url, api_key),
        "anthropic": AnthropicSDK(edge_url, api_key),
        "bedrock": BedrockSDK(tls_url, cert_path),
    }
    total: Counter[str] = Counter()
    began = time.monotonic()
    planned = conversations(sessions)
    with ThreadPoolExecutor(workers) as pool:
        for done, outcomes in enumerate(pool.map(lambda c: replay(c, clients[c.sdk]), planned), start=1):
            total.update(outcomes)
            if done % 10 == 0 or done == len(planned):
                print(
                    f"  {done}/{len(planned)} sessions, {total['answered']} requests answered, "
                    f"{total['failed']} failed as planned ({time.monotonic() - began:.0f} s)",
                    flush=True,
                )
    return total
