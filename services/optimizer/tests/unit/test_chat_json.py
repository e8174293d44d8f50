"""The plan of a request given as JSON (the optimizer's gRPC path) is the plan of the parsed request."""

from typing import Any

import orjson
import pytest

from orqen_common.lru import Lru
from orqen_optimizer import chat_json
from orqen_optimizer.chat_json import ChatJson, MalformedChatError
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.tools import raw_tool_facts, tool_facts

SEMANTIC_ONLY = RoutingPolicy(mode="semantic", ab_control_share=0.0)
ASK = [{"role": "user", "content": "What is Apple's stock trading at right now?"}]


def both_plans(planner: Planner, chat: dict[str, Any], policy: RoutingPolicy) -> tuple[Any, Any]:
    """(the parsed plan, the JSON plan parsed back), each with its stats and trace."""
    forwarded, stats, trace = planner.plan(chat, policy)
    body, json_stats, json_trace = planner.plan_json(ChatJson.parse(orjson.dumps(chat)), policy)
    as_json = chat if body is None else orjson.loads(body)
    return (forwarded, stats, trace), (as_json, json_stats, json_trace)


def test_a_routed_request_is_forwarded_the_same_either_way(tools: list[dict[str, Any]]) -> None:
    planner = Planner(ToolIndex(), max_new_tools=100)
    chat = {"model": "m", "messages": ASK, "tools": tools, "temperature": 0.2, "x-other": {"kept": [1, 2]}}
    parsed, as_json = both_plans(planner, chat, SEMANTIC_ONLY)
    assert parsed == as_json
    assert list(as_json[0]) == list(chat)  # every field, in its place
    assert as_json[1].routing == "semantic" and len(as_json[0]["tools"]) < len(tools)


def test_a_long_conversation_is_compressed_the_same_either_way(tools: list[dict[str, Any]]) -> None:
    output = "\n".join(f"line {i}: value_{i} ok" for i in range(600))
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": output},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "third"},
    ]  # fmt: skip
    for chat in ({"model": "m", "messages": messages}, {"model": "m", "messages": messages, "tools": tools[:3]}):
        parsed, as_json = both_plans(Planner(None), chat, SEMANTIC_ONLY)
        assert parsed == as_json and as_json[1].context_compressed


def test_a_request_the_plan_does_not_change_comes_back_as_none() -> None:
    body, stats, _ = Planner(None).plan_json(ChatJson.parse(orjson.dumps({"model": "m", "messages": ASK})))
    assert body is None and stats.tools_input == 0


def test_tools_that_are_not_a_list_are_left_as_they_are() -> None:
    chat = ChatJson.parse(b'{"model": "m", "messages": [], "tools": {"not": "a list"}}')
    assert chat.tools is None
    body, stats, _ = Planner(None).plan_json(chat)
    assert body is None and stats.tools_input == 0


def test_a_tool_list_seen_before_is_not_skimmed_again(tools: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"model": "m", "messages": ASK, "tools": tools})
    first = ChatJson.parse(body)
    again = ChatJson.parse(orjson.dumps({"model": "other", "messages": [], "tools": tools}))  # the same list's text
    assert first.tools is not None and again.tools is first.tools  # each tool's text is the same object: hashed once
    assert [orjson.loads(t) for t in again.tools] == tools
    other = ChatJson.parse(orjson.dumps({"messages": ASK, "tools": tools[1:]}))
    assert other.tools is not None and [orjson.loads(t) for t in other.tools] == tools[1:]


def test_the_lists_kept_stay_within_their_budget(monkeypatch: pytest.MonkeyPatch, tools: list[dict[str, Any]]) -> None:
    lists = [orjson.dumps({"messages": ASK, "tools": tools[i:]}) for i in range(4)]
    budget = 2 * sum(len(orjson.dumps(tools[i:])) for i in (2, 3))
    monkeypatch.setattr(chat_json, "_kept", Lru(budget, weigh=chat_json._list_weight))
    first = [ChatJson.parse(body).tools for body in lists]
    again = [ChatJson.parse(body).tools for body in lists[2:]] + [ChatJson.parse(body).tools for body in lists[:2]]
    assert again[0] is first[2] and again[1] is first[3]  # the latest two lists fit and were kept
    assert again[2] is not first[0] and again[3] is not first[1]  # the older ones were dropped
    assert again[2] == first[0] and again[3] == first[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "chat_json is not valid JSON."),
        (b"[1, 2]", "chat_json must be a chat request object."),
        (b'{"messages": "\\ud800"}', "chat_json is not valid JSON."),  # a lone surrogate: orjson refuses it
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MalformedChatError, match=message):
        ChatJson.parse(body)


def test_a_tool_given_as_json_has_the_facts_of_the_parsed_tool(tools: list[dict[str, Any]]) -> None:
    spaced = orjson.dumps(tools[0], option=orjson.OPT_INDENT_2)  # another text of the same tool
    assert raw_tool_facts(spaced) is tool_facts(tools[0])
    assert raw_tool_facts(spaced).compressed_json == orjson.dumps(tool_facts(tools[0]).compressed)


def test_a_list_seen_lately_gives_its_tools_facts_without_a_lookup_per_tool(tools: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"messages": [], "tools": tools})
    first, again = ChatJson.parse(body), ChatJson.parse(body)
    assert first.tools is not None and again.tools is not None
    assert first.tools.facts() == [tool_facts(t) for t in tools]
    assert again.tools.facts() is first.tools.facts()  # kept with the list
    changed = ChatJson.parse(orjson.dumps({"messages": [], "tools": tools[:-1]}))
    assert changed.tools is not None and changed.tools.facts() == first.tools.facts()[:-1]
