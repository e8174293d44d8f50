"""The ledger through the running stack: traffic from the official OpenAI SDK, figures read back
with httpx from the usage, analytics, session and request-log routes (and their aliases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import anthropic
import openai
import pytest

from accounts import http, logged, new_account_key
from orqen.v1 import common_pb2
from orqen_common.prices import Prices

SESSION = "trip-planning"


def tool(name: str, purpose: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{purpose}. Returns a JSON object with the result.",
            "parameters": {
                "type": "object",
                "title": f"{name}_args",
                "properties": {"query": {"type": "string", "title": "Query", "description": "What to look up."}},
                "required": ["query"],
            },
        },
    }


TOOLS = [
    tool("get_weather", "Current weather and forecast for a city"),
    tool("search_flights", "Search flights between two airports on a date"),
    tool("book_hotel", "Book a hotel room in a city for given nights"),
    tool("convert_currency", "Convert an amount between two currencies"),
    tool("get_stock_price", "Latest trading price of a stock ticker"),
    tool("send_email", "Send an email to a recipient with a subject and body"),
    tool("create_calendar_event", "Create a calendar event with a title and time"),
    tool("translate_text", "Translate text into another language"),
    tool("get_news", "Latest news headlines on a topic"),
    tool("find_restaurant", "Find restaurants near a location by cuisine"),
]


def usd(model: str, usage: common_pb2.Usage) -> float:
    """What orqen_common.prices charges for `usage` of OpenAI's `model` now."""
    cost = Prices().price("openai", model, usage, dt.datetime.now(dt.UTC))
    assert cost is not None
    return float(cost.total)


@pytest.fixture(scope="module")
async def traffic(stack: Any) -> dict[str, Any]:
    """A fresh account and the traffic its SDK sent: three calls in one session, a stream, an upstream failure."""
    key = await new_account_key(stack, f"usage-{uuid.uuid4().hex[:8]}")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)
    session = {"X-Orqen-Session-Id": SESSION}

    def run() -> dict[str, Any]:
        usages = []
        for text in ('call get_weather {"query": "Lisbon"}', "thanks", "and tomorrow?"):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}], tools=TOOLS, extra_headers=session
            )
            usages.append(raw.parse().usage)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "stream please"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usages.append(chunks[-1].usage)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="fake-429", messages=[{"role": "user", "content": "x"}])
        return {"key": key, "usages": usages}

    sent = await asyncio.to_thread(run)
    async with http(stack, key) as reader:
        for _ in range(200):
            if len((await reader.get("/v1/account/requests")).json()["data"]) == 5:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the requests never all reached the ledger")
    return sent


async def test_summary_daily_and_savings_add_up_to_what_the_sdk_was_told(stack: Any, traffic: dict[str, Any]) -> None:
    prompt = sum(u.prompt_tokens for u in traffic["usages"])
    cached = sum(u.prompt_tokens_details.cached_tokens for u in traffic["usages"])
    completion = sum(u.completion_tokens for u in traffic["usages"])
    cost = usd(
        "gpt-4o-mini", common_pb2.Usage(input_tokens=prompt, output_tokens=completion, cached_input_tokens=cached)
    )
    async with http(stack, traffic["key"]) as api:
        summary = (await api.get("/v1/account/usage/summary")).json()
        assert (await api.get("/v1/usage/summary")).json() == summary
        assert (summary["requests"], summary["errors"]) == (5, 1)
        assert (summary["input_tokens"], summary["cached_input_tokens"], summary["output_tokens"]) == (
            prompt,
            cached,
            completion,
        )
        assert summary["cost_usd"] == pytest.approx(cost)
        # The ten tools lost their titles on the way: the schema compression saved tokens, priced.
        assert summary["tokens_saved"] > 0 and summary["savings_usd"] == pytest.approx(
            usd("gpt-4o-mini", common_pb2.Usage(input_tokens=summary["tokens_saved"]))
        )
        assert (summary["unpriced_requests"], summary["unpriced_tokens"]) == (0, 0)
        # The failed call reached OpenAI, which answered 429: its attempts are recorded, so it counts
        # under that provider, as an error that cost nothing.
        by_provider = {p["provider"]: p for p in summary["providers"]}
        assert set(by_provider) == {"openai"}
        assert (by_provider["openai"]["requests"], by_provider["openai"]["errors"]) == (5, 1)
        assert by_provider["openai"]["cost_usd"] == pytest.approx(cost)

        daily = (await api.get("/v1/account/usage/daily")).json()
        assert (await api.get("/v1/usage/daily")).json() == daily
        assert len(daily["data"]) == 30 and daily["data"][-1]["date"] == summary["period_end"]
        assert daily["data"][-1]["requests"] == 5 and daily["data"][-1]["cost_usd"] == pytest.approx(cost)

        savings = (await api.get("/v1/account/usage/analytics/savings?days=7")).json()
        assert (await api.get("/v1/usage/analytics/savings?days=7")).json() == savings
        assert savings["models"][0]["model"] == "gpt-4o-mini"
        assert savings["models"][0]["tool_tokens_saved"] == summary["tokens_saved"]


async def test_analytics_latency_optimization_and_tool_health(stack: Any, traffic: dict[str, Any]) -> None:
    async with http(stack, traffic["key"]) as api:
        analytics = (await api.get("/v1/account/usage/analytics/daily?days=2")).json()
        assert (await api.get("/v1/usage/analytics/daily?days=2")).json() == analytics
        today = analytics["data"][-1]
        assert (today["requests"], today["errors"], today["success_rate"]) == (5, 1, 0.8)
        assert 0 < today["latency"]["p50_ms"] <= today["latency"]["p95_ms"]

        latency = (await api.get("/v1/account/usage/analytics/latency")).json()
        assert (await api.get("/v1/usage/analytics/latency")).json() == latency
        assert latency["requests"] == 5 and latency["latency"]["p95_ms"] > 0
        assert latency["mean_gateway_ms"] > 0 and latency["mean_ttft_ms"] > 0

        optimization = (await api.get("/v1/account/optimization/stats")).json()
        assert optimization["optimized_requests"] == 3 and optimization["tools_input"] == 30
        assert optimization["tool_tokens_out"] < optimization["tool_tokens_in"]

        tools = {t["name"]: t for t in (await api.get("/v1/account/tools/health")).json()["data"]}
        assert set(tools) == {t["function"]["name"] for t in TOOLS}
        weather = tools["get_weather"]
        assert (weather["offered"], weather["called"], weather["errors"]) == (3, 1, 0)
        assert weather["forwarded"] >= 1


async def test_sessions_and_the_request_log_with_filters(stack: Any, traffic: dict[str, Any]) -> None:
    async with http(stack, traffic["key"]) as api:
        sessions = (await api.get("/v1/account/sessions")).json()
        assert [(s["session_id"], s["requests"]) for s in sessions["data"]] == [(SESSION, 3)]
        inside = (await api.get(f"/v1/account/sessions/{SESSION}/requests?limit=2")).json()
        assert len(inside["data"]) == 2 and inside["has_more"]
        rest = (await api.get(f"/v1/account/sessions/{SESSION}/requests?cursor={inside['next_cursor']}")).json()
        assert len(rest["data"]) == 1 and not rest["has_more"]
        assert {r["session_id"] for r in inside["data"] + rest["data"]} == {SESSION}

        failed = (await api.get("/v1/requests?status=error")).json()["data"]
        assert [(r["model_requested"], r["status"]) for r in failed] == [("fake-429", 429)]
        assert (await api.get("/v1/account/requests?status=429")).json()["data"] == failed
        assert len((await api.get("/v1/account/requests?model=gpt-4o-mini")).json()["data"]) == 4
        assert len((await api.get(f"/v1/account/requests?session_id={SESSION}")).json()["data"]) == 3
        assert (await api.get("/v1/account/requests?since=2999-01-01T00:00:00Z")).json()["data"] == []
        assert len((await api.get("/v1/account/requests?ingress=openai")).json()["data"]) == 5
        assert (await api.get("/v1/account/requests?ingress=anthropic")).json()["data"] == []
        one = (await api.get(f"/v1/account/requests/{failed[0]['request_id']}")).json()
        assert one["error"] and one["cost_usd"] == 0

        for bad in (
            "/v1/account/requests?status=oops",
            "/v1/account/requests?since=yesterday",
            "/v1/account/requests?ingress=open%00ai",
            "/v1/account/requests?model=gpt%00",
            "/v1/usage/daily?days=0",
        ):
            refused = await api.get(bad)
            assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error", bad
        missing = await api.get("/v1/account/sessions/no-such-session/requests")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


async def test_another_account_sees_none_of_it(stack: Any, traffic: dict[str, Any]) -> None:
    async with http(stack, traffic["key"]) as alice:
        request_id = (await alice.get("/v1/account/requests")).json()["data"][0]["request_id"]
    bob_key = await new_account_key(stack, f"usage-bob-{uuid.uuid4().hex[:8]}")
    async with http(stack, bob_key) as bob:
        assert (await bob.get("/v1/account/usage/summary")).json()["requests"] == 0
        assert (await bob.get("/v1/account/requests")).json()["data"] == []
        assert (await bob.get("/v1/account/sessions")).json()["data"] == []
        assert (await bob.get("/v1/account/tools/health")).json()["data"] == []
        assert (await bob.get(f"/v1/account/requests/{request_id}")).status_code == 404
        assert (await bob.get(f"/v1/account/sessions/{SESSION}/requests")).status_code == 404
        assert (await bob.get("/v1/account/usage/analytics/latency")).json()["requests"] == 0


@pytest.mark.parametrize(
    "model",
    ["claude-sonnet-4-6-fake-cache-write", "bedrock/anthropic.claude-3-haiku-20240307-v1:0-fake-cache-write"],
    ids=["anthropic", "bedrock"],
)
async def test_prompt_cache_writes_reach_the_request_log_as_a_part_of_input_tokens(stack: Any, model: str) -> None:
    key = await new_account_key(stack, f"usage-cache-{uuid.uuid4().hex[:8]}")
    client = anthropic.Anthropic(base_url=stack.info.edge_url, api_key=key, max_retries=0)
    raw = await asyncio.to_thread(
        client.messages.with_raw_response.create,
        model=model,
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
    )
    assert raw.parse().usage.cache_creation_input_tokens == 20
    async with http(stack, key) as api:
        entry = await logged(api, raw.headers["x-request-id"])
    # The fakes' CACHE_WRITE_USAGE: 42 prompt tokens, 10 read from the prompt cache and 20 written to it.
    assert (entry["input_tokens"], entry["cached_input_tokens"], entry["cache_write_input_tokens"]) == (42, 10, 20)


async def test_an_operator_price_is_used_and_a_model_without_price_is_logged_as_unknown_never_zero(
    stack: Any,
) -> None:
    # The stack's ORQEN_PRICES_FILE (tests-e2e/fakes/operator_prices.json) prices local/house-model
    # at $2 in, $4 out per 1M tokens; local/other-model is in neither it nor genai-prices.
    key = await new_account_key(stack, f"usage-prices-{uuid.uuid4().hex[:8]}")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)

    def ask(model: str) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hello"}]
        )
        return raw.headers["x-request-id"]

    priced, unknown = [await asyncio.to_thread(ask, m) for m in ("local/house-model", "local/other-model")]
    async with http(stack, key) as api:
        house, other = await logged(api, priced), await logged(api, unknown)
        summary = (await api.get("/v1/account/usage/summary")).json()
    # The fakes' USAGE: 42 prompt tokens (10 of them cache reads, no cache price: input) and 7 out.
    assert (house["cost_usd"], house["price_unknown"]) == (pytest.approx((42 * 2 + 7 * 4) / 1e6), False)
    assert (other["cost_usd"], other["savings_usd"], other["price_unknown"]) == (None, None, True)
    assert (summary["requests"], summary["unpriced_requests"], summary["unpriced_tokens"]) == (2, 1, 49)
    assert summary["cost_usd"] == pytest.approx(house["cost_usd"])
