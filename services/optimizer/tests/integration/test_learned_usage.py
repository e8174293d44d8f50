"""A plan reads the account's learned tool usage from a real Redis and forwards what it expects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from orqen_common.tool_learning import ASKED, CO_USED, FOLLOWS, relation_key, weight
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.learned import LearnedUsage
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import RoutingPolicy

ACCOUNT = "7c1e0d2a-0000-4000-8000-000000000001"
ROUTED = RoutingPolicy(mode="semantic", k_floor=1, ab_control_share=0.0)


def tool(name: str, description: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {}}}


TOOLS = [
    tool("get_stock_price", "Latest trading price of a stock ticker symbol."),
    tool("get_weather", "Current weather and forecast for a city."),
    tool("book_flight", "Book a flight between two airports."),
    tool("send_email", "Send an email message to a recipient."),
    tool("translate_text", "Translate text into another language."),
    tool("create_calendar_event", "Create an event in the user's calendar."),
    tool("play_music", "Play a song, album or playlist."),
    tool("order_food", "Order a meal from a restaurant for delivery."),
    tool("set_reminder", "Remind the user of something at a given time."),
]
CHAT = {
    "model": "m",
    "tools": TOOLS,
    "messages": [
        {"role": "user", "content": "What does AAPL trade at?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_stock_price", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "AAPL: 187.30 USD"},
    ],
}


@pytest.fixture
def redis(orqen_redis_db_url: str) -> Iterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    client.close()


def forwarded(planner: Planner, policy: RoutingPolicy = ROUTED) -> tuple[list[str], Any]:
    chat, _, trace = planner.plan(CHAT, policy, ACCOUNT)
    return [t["function"]["name"] for t in chat["tools"]], trace


def test_a_tool_that_follows_the_last_call_is_forwarded_with_its_reason_until_forgotten(redis: Redis) -> None:
    planner = Planner(ToolIndex(redis), max_new_tools=100, learned=LearnedUsage(redis))
    before, trace = forwarded(planner)
    assert "get_stock_price" in before and "create_calendar_event" not in before and not trace.learned

    # What accounting writes after three sessions that filed a calendar event after the price.
    key = relation_key(ACCOUNT, FOLLOWS, "get_stock_price")
    w = weight(time.time())
    redis.hset(key, mapping={"": 3 * w, "create_calendar_event": 3 * w})
    after, trace = forwarded(planner)
    assert after == sorted([*before, "create_calendar_event"], key=[t["function"]["name"] for t in TOOLS].index)
    assert [(t.name, t.reason, t.score) for t in trace.learned] == [
        ("create_calendar_event", "follows get_stock_price (1.00)", 1.0)
    ]
    assert trace.k == len(before)  # K is the router's own: calibration tells the two apart

    # The account's K cap holds: no room beyond it, nothing added.
    capped, trace = forwarded(
        planner, RoutingPolicy(mode="semantic", k_floor=1, k_cap=len(before), ab_control_share=0.0)
    )  # no A/B control: one plan in twenty would otherwise forward every tool
    assert "create_calendar_event" not in capped and not trace.learned

    redis.delete(key)
    assert forwarded(planner)[0] == before


def test_the_statistics_that_exist_are_read_in_one_command_each_under_its_own_anchor(redis: Redis) -> None:
    redis.hset(relation_key(ACCOUNT, CO_USED, "ls"), mapping={"": "4", "cd": "3"})
    redis.hset(relation_key(ACCOUNT, ASKED, "grep"), mapping={"": "2", "find": "2"})
    keys = [(FOLLOWS, "pwd"), (CO_USED, "cat"), (CO_USED, "ls"), (CO_USED, "du"), (ASKED, "grep")]
    assert LearnedUsage(redis)._read(ACCOUNT, keys) == [
        (CO_USED, "ls", {b"": b"4", b"cd": b"3"}),
        (ASKED, "grep", {b"": b"2", b"find": b"2"}),
    ]
    assert LearnedUsage(redis)._read("another-account", keys) == []
