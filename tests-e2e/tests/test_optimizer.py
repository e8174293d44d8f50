"""What the optimizer does to a request, seen from the SDK and from the provider's side."""

from __future__ import annotations

import asyncio
from typing import Any

import openai


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
