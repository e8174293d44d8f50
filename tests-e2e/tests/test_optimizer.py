"""What the optimizer does to a request, seen from the SDK and from the provider's side."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import openai

from accounts import http, logged, new_account_key
from toolbox import TOOLBOX


def _client(stack: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=stack.info.api_key, max_retries=0)


async def test_tool_schemas_reach_the_provider_compressed_and_still_callable(stack: Any) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.   Returns temperature and sky.",
            "parameters": {
                "type": "object",
                "title": "GetWeatherArgs",
                "properties": {
                    "city": {"type": "string", "title": "City", "description": "The city. Use English names."},
                    "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                },
                "required": ["city"],
            },
        },
    }
    raw = await asyncio.to_thread(
        _client(stack).chat.completions.with_raw_response.create,
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": 'call get_weather {"city": "Paris"}'}],
        tools=[tool],
    )
    completion = raw.parse()
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert (raw.headers["x-orqen-tools-input"], raw.headers["x-orqen-tools-output"]) == ("1", "1")
    sent = stack.upstream.requests[-1]["body"]["tools"][0]["function"]
    assert sent["parameters"] == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city."},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city"],
    }
    assert sent["description"] == "Current weather for a city. Returns temperature and sky."


async def test_a_long_agent_conversation_is_shrunk_and_the_savings_reported(stack: Any) -> None:
    log = "\n".join(f"2026-11-20 INFO step {i}: copied shard_{i} to the archive" for i in range(900))
    log += "\nERROR shard_512 checksum mismatch at /data/archive/shard_512.bin"
    question = "Which shard failed, shard_512? Answer with its path."
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the storage assistant."},
        {"role": "user", "content": "Archive last night's shards."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "archive", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": log},
        {"role": "assistant", "content": "Done, one error."},
        {"role": "user", "content": "Any errors?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": question},
    ]
    raw = await asyncio.to_thread(
        _client(stack).chat.completions.with_raw_response.create, model="gpt-4o-mini", messages=messages
    )
    assert raw.parse().choices[0].message.content == f"echo: {question}"
    tokens_in, tokens_out = int(raw.headers["x-orqen-ctx-tokens-in"]), int(raw.headers["x-orqen-ctx-tokens-out"])
    assert tokens_out < tokens_in / 4
    assert int(raw.headers["x-orqen-ctx-tokens-saved"]) == tokens_in - tokens_out
    sent = stack.upstream.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == [m["role"] for m in messages]
    assert sent[0] == messages[0] and sent[-1] == messages[-1]
    assert "ERROR shard_512 checksum mismatch at /data/archive/shard_512.bin" in sent[3]["content"]
    assert len(sent[3]["content"]) < len(log) / 4


async def test_a_large_toolset_is_routed_and_the_decision_is_traced(stack: Any) -> None:
    messages = [{"role": "user", "content": 'What does AAPL trade at? call get_stock_price {"query": "AAPL"}'}]
    # The first sight of these tools has them indexed in the background; routing follows.
    for _ in range(60):
        raw = await asyncio.to_thread(
            _client(stack).chat.completions.with_raw_response.create,
            model="gpt-4o-mini",
            messages=messages,
            tools=TOOLBOX,
        )
        if raw.headers.get("x-orqen-routing", "passthrough") != "passthrough":
            break
        await asyncio.sleep(0.5)
    assert raw.headers["x-orqen-routing"].removesuffix("_ab_ctrl") in ("keyword", "semantic")
    assert raw.parse().choices[0].message.tool_calls[0].function.name == "get_stock_price"
    forwarded = [t["function"]["name"] for t in stack.upstream.requests[-1]["body"]["tools"]]
    assert "get_stock_price" in forwarded and raw.headers["x-orqen-tools-input"] == str(len(TOOLBOX))
    assert raw.headers["x-orqen-tools-output"] == str(len(forwarded))
    assert raw.headers["x-orqen-prune-ratio"] == f"{len(forwarded)}/{len(TOOLBOX)}"
    # The decision reaches the account's routing traces, with the tool the model called.
    headers = {"authorization": f"Bearer {stack.info.api_key}"}
    request_id = raw.headers["x-request-id"]
    async with httpx.AsyncClient(base_url=stack.info.edge_url, headers=headers) as http:
        for _ in range(100):
            traces = (await http.get("/v1/account/routing/traces")).json()["data"]
            mine = [t for t in traces if t["request_id"] == request_id]
            if mine:
                break
            await asyncio.sleep(0.1)
    assert mine, "the routing decision never reached /v1/account/routing/traces"
    trace = mine[0]
    assert trace["trace"]["candidates"][0]["name"] == "get_stock_price"
    assert trace["trace"]["intent"].startswith("What does AAPL trade at?")
    assert trace["tools_called"] == ["get_stock_price"]


async def _routed(client: openai.OpenAI, **request: Any) -> Any:
    """The raw response of the first request the optimizer routed (a new toolset is indexed first)."""
    for _ in range(60):
        raw = await asyncio.to_thread(client.chat.completions.with_raw_response.create, **request)
        if raw.headers.get("x-orqen-routing", "passthrough") != "passthrough":
            return raw
        await asyncio.sleep(0.5)
    raise AssertionError("the toolset was never routed")


async def test_the_accounts_routing_preferences_apply_to_its_next_request(stack: Any) -> None:
    key = await new_account_key(stack, f"routing-preferences-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does AAPL trade at?"}]}
    async with http(stack, key) as account:
        await account.put("/v1/account/routing/preferences", json={"mode": "passthrough"})
        raw = await asyncio.to_thread(client.chat.completions.with_raw_response.create, **ask, tools=TOOLBOX)
        assert raw.headers["x-orqen-routing"] == "passthrough"
        assert raw.headers["x-orqen-tools-output"] == str(len(TOOLBOX))
        capped = {"mode": "semantic", "k_floor": 1, "k_cap": 1, "ab_control_share": 0}
        assert (await account.put("/v1/account/routing/preferences", json=capped)).status_code == 200
        trip = "Plan my trip: book a flight to Rome, find a hotel there, and convert 200 EUR to USD"
        raw = await _routed(client, **{**ask, "messages": [{"role": "user", "content": trip}]}, tools=TOOLBOX)
        assert raw.headers["x-orqen-routing"] == "limit" and raw.headers["x-orqen-prune-ratio"] == f"1/{len(TOOLBOX)}"
        [forwarded] = stack.upstream.requests[-1]["body"]["tools"]
        assert forwarded["function"]["name"] in ("book_flight", "search_hotels", "convert_currency")


async def test_orqen_auto_logs_the_features_that_decided_with_the_optimizers_tool_lead(stack: Any) -> None:
    key = await new_account_key(stack, f"auto-clear-tool-{uuid.uuid4()}")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)
    ask = {"model": "orqen/auto", "messages": [{"role": "user", "content": "Get the stock price of AAPL"}]}
    async with http(stack, key) as account:
        await account.put("/v1/account/routing/preferences", json={"ab_control_share": 0})
        raw = await _routed(client, **ask, tools=TOOLBOX)
        entry = await logged(account, raw.headers["x-request-id"])
    # The optimizer ranked the toolbox and dispatch weighed its first tool's lead, far ahead here.
    reason = entry["route_reason"]
    assert reason.startswith("auto: simple ask (p 0.") and "ask of 6 words" in reason and "tool lead 0." in reason
    assert "-> fast tier (" in reason
    assert entry["model_used"] == raw.headers["x-orqen-model"]
