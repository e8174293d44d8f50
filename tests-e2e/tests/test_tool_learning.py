"""Routing that learns from what models call: sessions teach it a tool it dropped; a reset forgets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import openai

from accounts import http, new_account_key
from toolbox import TOOLBOX, function_tool

PRICE_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_stock_price", "arguments": '{"query": "AAPL"}'},
}
# The conversation once the price is in: the router alone keeps the price tool, not the calendar.
AFTER_PRICE = [
    {"role": "user", "content": "What does AAPL trade at?"},
    {"role": "assistant", "content": None, "tool_calls": [PRICE_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "AAPL: 187.30 USD"},
]
# Three dozen tools: a dozen the router forwards whole ("not worth cutting further"), so the
# everyday TOOLBOX comes with finance and office tools that rank above the calendar for a price.
TOOLS = TOOLBOX + [
    function_tool(name, description)
    for name, description in (
        ("get_market_news", "Latest market news about a company or a stock ticker."),
        ("get_stock_history", "Daily closing prices of a stock ticker over a date range."),
        ("get_company_profile", "Sector, size and description of a listed company by ticker."),
        ("get_dividends", "Dividend payments of a stock ticker."),
        ("get_earnings", "Quarterly earnings reports of a listed company."),
        ("get_exchange_rate", "Exchange rate between two currencies today."),
        ("get_crypto_price", "Latest price of a cryptocurrency."),
        ("get_index_level", "Current level of a stock market index such as the S&P 500."),
        ("get_analyst_ratings", "Analyst buy, hold and sell ratings of a stock."),
        ("get_portfolio", "Holdings and value of the user's investment portfolio."),
        ("place_stock_order", "Buy or sell shares of a stock ticker."),
        ("get_options_chain", "Option contracts listed for a stock ticker."),
        ("create_document", "Create a new text document."),
        ("share_file", "Share a file with another person."),
        ("search_contacts", "Find a person in the user's contacts."),
        ("make_phone_call", "Call a phone number."),
        ("take_note", "Save a short note for later."),
        ("get_news_headlines", "Today's top news headlines."),
        ("search_web", "Search the web for pages about a topic."),
        ("get_time_zone", "The time zone and local time of a city."),
        ("track_package", "Where a shipped parcel is, by tracking number."),
        ("rent_car", "Rent a car at an airport or city for given dates."),
        ("find_restaurants", "Restaurants near a place, by cuisine."),
        ("check_bank_balance", "Balance of the user's bank accounts."),
    )
]
ROUTED = {"mode": "semantic", "k_floor": 1, "k_cap": 0, "ab_control_share": 0}


def _forwarded(stack: Any) -> list[str]:
    return [t["function"]["name"] for t in stack.upstream.requests[-1]["body"].get("tools", [])]


async def _trace(account: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    for _ in range(100):
        traces = (await account.get("/v1/account/routing/traces")).json()["data"]
        mine = [t["trace"] for t in traces if t["request_id"] == request_id]
        if mine:
            return mine[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the routing decision never reached /v1/account/routing/traces")


async def _learned_pair(account: httpx.AsyncClient, anchor: str, tool: str, count: float) -> dict[str, Any]:
    """The calibration's learned "follows" pair, once accounting has learned it `count` times."""
    for _ in range(100):
        learning = (await account.get("/v1/account/routing/calibration")).json()["learning"] or {}
        for pair in learning.get("top_pairs", []):
            if (pair["relation"], pair["anchor"], pair["tool"]) == ("follows", anchor, tool) and pair["count"] >= count:
                return pair
        await asyncio.sleep(0.1)
    raise AssertionError(f"accounting never learned that {tool} follows {anchor}")


async def test_sessions_teach_the_router_a_tool_it_dropped_and_a_reset_forgets_it(stack: Any) -> None:
    key = await new_account_key(stack, f"tool-learning-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)

    async def ask(messages: list[dict[str, Any]], session: str | None = None) -> Any:
        headers = {"x-orqen-session-id": session} if session else None
        return await asyncio.to_thread(
            client.chat.completions.with_raw_response.create,
            model="gpt-4o-mini",
            messages=messages,
            tools=TOOLS,
            extra_headers=headers,
        )

    async with http(stack, key) as account:
        assert (await account.put("/v1/account/routing/preferences", json=ROUTED)).status_code == 200
        for _ in range(60):  # a new toolset is indexed in the background first
            raw = await ask(AFTER_PRICE)
            if raw.headers["x-orqen-routing"] != "passthrough":
                break
            await asyncio.sleep(0.5)
        assert raw.headers["x-orqen-routing"] == "semantic"
        assert "get_stock_price" in _forwarded(stack) and "create_calendar_event" not in _forwarded(stack)

        # Three sessions, every tool offered to the model: after the price, it files a calendar event.
        assert (await account.put("/v1/account/routing/preferences", json={"mode": "passthrough"})).status_code == 200
        for _ in range(3):
            sid = f"learn-{uuid.uuid4()}"
            first = [{"role": "user", "content": 'What does AAPL trade at? call get_stock_price {"query": "AAPL"}'}]
            await ask(first, sid)
            file_it = {"role": "user", "content": 'Note it: call create_calendar_event {"query": "AAPL 187.30"}'}
            await ask([*AFTER_PRICE, file_it], sid)
        pair = await _learned_pair(account, "get_stock_price", "create_calendar_event", 2.99)
        assert pair["probability"] == 1.0

        assert (await account.put("/v1/account/routing/preferences", json=ROUTED)).status_code == 200
        raw = await ask(AFTER_PRICE)
        assert "create_calendar_event" in _forwarded(stack)
        trace = await _trace(account, raw.headers["x-request-id"])
        assert trace["learned"][0]["name"] == "create_calendar_event"
        assert trace["learned"][0]["reason"] == "follows get_stock_price (1.00)"
        assert int(raw.headers["x-orqen-tools-output"]) == trace["k"] + len(trace["learned"])

        reset = await account.delete("/v1/account/routing/learning")
        assert reset.status_code == 200 and reset.json()["keys_deleted"] > 0
        assert (await account.get("/v1/account/routing/calibration")).json()["learning"]["keys"] == 0
        await ask(AFTER_PRICE)
        assert "create_calendar_event" not in _forwarded(stack)
