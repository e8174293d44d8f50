"""Every ingress SDK x every provider format, streaming and not, through the running stack.

The fake upstreams validate what they receive against each provider's real wire format
and answer by the shared scenario (tests-e2e/fakes/scenario.py): "describe" returns what
the provider saw, `call NAME {json}` makes tool calls, usage is always 42 prompt tokens
(10 cache reads) and 7 output tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from harness import OPENAI_KEY
from sdk_clients import SDK, AnthropicSDK, Ask, BedrockSDK, OpenAISDK, Result, Turn

PROVIDERS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
    "bedrock": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
}
INGRESSES = ("openai", "anthropic", "bedrock")
MATRIX = [(i, p, s) for i in INGRESSES for p in PROVIDERS for s in (False, True)]
IDS = [f"{i}-to-{p}-{'stream' if s else 'json'}" for i, p, s in MATRIX]

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK = {
    "name": "get_time",
    "description": "Local time in a time zone.",
    "schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def sdk_for(stack: Any, ingress: str) -> SDK:
    if ingress == "openai":
        return OpenAISDK(stack.info.edge_url, stack.info.api_key)
    if ingress == "anthropic":
        return AnthropicSDK(stack.info.edge_url, stack.info.api_key)
    return BedrockSDK(stack.info.tls_url, str(stack.info.cert_path))


async def ask(stack: Any, ingress: str, request: Ask) -> Result:
    sdk = sdk_for(stack, ingress)
    return await asyncio.to_thread(sdk.ask, request)


def observed(result: Result) -> dict[str, Any]:
    return json.loads(result.text)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("ingress", "provider", "stream"), MATRIX, ids=IDS)
async def test_system_multi_turn_sampling_and_usage(stack: Any, ingress: str, provider: str, stream: bool) -> None:
    fake = stack.upstreams.by_name(provider)
    before = len(fake.requests)
    result = await ask(
        stack,
        ingress,
        Ask(
            model=PROVIDERS[provider],
            system="You are terse.",
            turns=[Turn("user", "first question"), Turn("assistant", "first answer"), Turn("user", "describe")],
            max_tokens=100,
            temperature=0.25,
            top_p=0.5,
            stop=["zzz"],
            stream=stream,
        ),
    )
    assert len(fake.requests) == before + 1, "the request reached the provider its model names"
    seen = observed(result)
    assert seen["system"] == "You are terse."
    assert seen["roles"] == ["user", "assistant", "user"]
    assert seen["user_texts"] == ["first question", "describe"]
    assert seen["assistant_texts"] == ["first answer"]
    assert (seen["max_tokens"], seen["temperature"], seen["top_p"]) == (100, 0.25, 0.5)
    assert seen["stop"] == ["zzz"]
    assert seen["stream"] is stream, "a streaming call is streamed upstream too"
    assert result.finish == "stop"
    assert result.usage == (42, 7, 10)


@pytest.mark.parametrize(("ingress", "provider", "stream"), MATRIX, ids=IDS)
async def test_parallel_tool_calls_and_their_results(stack: Any, ingress: str, provider: str, stream: bool) -> None:
    first = await ask(
        stack,
        ingress,
        Ask(
            model=PROVIDERS[provider],
            turns=[Turn("user", 'call get_weather {"city": "Paris"} call get_time {"tz": "CET"}')],
            tools=[WEATHER, CLOCK],
            tool_choice="auto",
            stream=stream,
        ),
    )
    assert first.finish == "tool"
    assert first.text == "Let me check."
    assert [(c.name, c.input) for c in first.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert all(c.id for c in first.tool_calls) and len({c.id for c in first.tool_calls}) == 2
    # Answer both calls in the next turn; each fake rejects results that do not pair with a call.
    second = await ask(
        stack,
        ingress,
        Ask(
            model=PROVIDERS[provider],
            turns=[
                Turn("user", 'call get_weather {"city": "Paris"} call get_time {"tz": "CET"}'),
                Turn("assistant", first.text, tool_calls=first.tool_calls),
                Turn("tool_results", results=[(first.tool_calls[0].id, "18C"), (first.tool_calls[1].id, "10:00")]),
            ],
            tools=[WEATHER, CLOCK],
            stream=stream,
        ),
    )
    assert second.text == "results: 18C | 10:00"
    assert second.finish == "stop"


@pytest.mark.parametrize(("ingress", "provider", "stream"), MATRIX, ids=IDS)
async def test_base64_image_reaches_the_provider(stack: Any, ingress: str, provider: str, stream: bool) -> None:
    result = await ask(
        stack,
        ingress,
        Ask(model=PROVIDERS[provider], turns=[Turn("user", "describe", images=[("image/png", PIXEL)])], stream=stream),
    )
    assert observed(result)["images"] == [{"media_type": "image/png", "size": len(PIXEL)}]


@pytest.mark.parametrize(("ingress", "provider", "stream"), MATRIX, ids=IDS)
async def test_stop_sequences_and_max_tokens(stack: Any, ingress: str, provider: str, stream: bool) -> None:
    stopped = await ask(
        stack,
        ingress,
        Ask(model=PROVIDERS[provider], turns=[Turn("user", "stop at halt")], stop=["halt"], stream=stream),
    )
    assert stopped.text.strip() == "one two"
    # Only Anthropic and Bedrock say that a stop sequence (rather than the end of the turn) stopped it.
    reported = provider != "openai" and ingress != "openai"
    assert stopped.finish == ("stop_sequence" if reported else "stop")
    cut = await ask(
        stack,
        ingress,
        Ask(model=PROVIDERS[provider], turns=[Turn("user", "a b c d e f")], max_tokens=3, stream=stream),
    )
    assert cut.text == "echo: a b"
    assert cut.finish == "length"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_image_urls_go_to_providers_that_take_them(stack: Any, provider: str) -> None:
    url = "https://example.com/cat.png"
    for ingress in ("openai", "anthropic"):
        result = await ask(
            stack, ingress, Ask(model=PROVIDERS[provider], turns=[Turn("user", "describe", image_urls=[url])])
        )
        assert observed(result)["images"] == [{"url": url}]


async def test_an_image_url_bedrock_cannot_take_is_a_400_naming_it(stack: Any) -> None:
    request = Ask(
        model=PROVIDERS["bedrock"], turns=[Turn("user", "describe", image_urls=["https://example.com/a.png"])]
    )
    with pytest.raises(openai.BadRequestError, match="Image URLs"):
        await ask(stack, "openai", request)
    with pytest.raises(anthropic.BadRequestError, match="Image URLs"):
        await ask(stack, "anthropic", request)


async def test_a_feature_the_provider_cannot_express_is_a_400_in_the_callers_shape(stack: Any) -> None:
    client = AnthropicSDK(stack.info.edge_url, stack.info.api_key).client
    with pytest.raises(anthropic.BadRequestError, match="top_k") as caught:
        await asyncio.to_thread(
            client.messages.create,
            model=PROVIDERS["openai"],
            max_tokens=10,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


ERROR_MODELS = {
    "openai": "gpt-fake-429",
    "anthropic": "claude-fake-429",
    "bedrock": "bedrock/anthropic.fake-429",
}


@pytest.mark.parametrize("provider", list(ERROR_MODELS))
@pytest.mark.parametrize("ingress", INGRESSES)
async def test_upstream_429_is_each_sdks_rate_limit_error(stack: Any, ingress: str, provider: str) -> None:
    request = Ask(model=ERROR_MODELS[provider], turns=[Turn("user", "hi")])
    if ingress == "openai":
        with pytest.raises(openai.RateLimitError) as oe:
            await ask(stack, ingress, request)
        assert oe.value.response.headers["retry-after"] == "7"
    elif ingress == "anthropic":
        with pytest.raises(anthropic.RateLimitError) as ae:
            await ask(stack, ingress, request)
        assert ae.value.response.headers["retry-after"] == "7"
    else:
        with pytest.raises(ClientError) as be:
            await ask(stack, ingress, request)
        assert be.value.response["Error"]["Code"] == "ThrottlingException"
        assert be.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
@pytest.mark.parametrize("ingress", INGRESSES)
async def test_an_error_mid_stream_reaches_the_sdk_as_its_stream_error(stack: Any, ingress: str, provider: str) -> None:
    model = ERROR_MODELS[provider].replace("fake-429", "fake-stream-error")
    request = Ask(model=model, turns=[Turn("user", "one two three four five six")], stream=True)
    expected: type[Exception] = {
        "openai": openai.APIError,
        "anthropic": anthropic.APIStatusError,
        "bedrock": EventStreamError,
    }[ingress]
    with pytest.raises(expected):
        await ask(stack, ingress, request)


async def test_per_request_bedrock_credentials_win_and_are_not_forwarded(stack: Any) -> None:
    fake = stack.upstreams.bedrock
    client = OpenAISDK(stack.info.edge_url, stack.info.api_key).client
    completion = await asyncio.to_thread(
        client.chat.completions.create,
        model=PROVIDERS["bedrock"],
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"aws_bearer_token_bedrock": fake.bearer_token, "aws_region_name": "us-east-1"},
    )
    assert completion.choices[0].message.content == "echo: hello"
    sent = fake.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {fake.bearer_token}"
    assert not any(k.startswith("aws_") for k in sent["body"])
    # Without them, the operator's IAM keys sign the call (SigV4, verified by the fake).
    await asyncio.to_thread(
        client.chat.completions.create, model=PROVIDERS["bedrock"], messages=[{"role": "user", "content": "hello"}]
    )
    assert fake.requests[-1]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")


async def test_an_arn_model_id_in_the_bedrock_path_goes_to_bedrock_unchanged(stack: Any) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    sdk = BedrockSDK(stack.info.tls_url, str(stack.info.cert_path))
    answer = await asyncio.to_thread(
        sdk.client.converse, modelId=arn, messages=[{"role": "user", "content": [{"text": "hello"}]}]
    )
    assert answer["output"]["message"]["content"] == [{"text": "echo: hello"}]
    assert stack.upstreams.bedrock.requests[-1]["model_id"] == arn


async def test_a_sigv4_signed_call_is_told_how_to_authenticate(stack: Any) -> None:
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=stack.info.tls_url,
        region_name="us-east-1",
        verify=str(stack.info.cert_path),
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(signature_version="v4"),  # IAM keys, as an unchanged boto3 application signs
    )
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(
            client.converse, modelId="gpt-4o-mini", messages=[{"role": "user", "content": [{"text": "hi"}]}]
        )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert "AWS_BEARER_TOKEN_BEDROCK" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("provider", list(ERROR_MODELS))
@pytest.mark.parametrize("ingress", INGRESSES)
async def test_an_upstream_500_is_a_502_bad_gateway_in_each_sdk(stack: Any, ingress: str, provider: str) -> None:
    request = Ask(model=ERROR_MODELS[provider].replace("fake-429", "fake-500"), turns=[Turn("user", "hi")])
    if ingress == "openai":
        with pytest.raises(openai.InternalServerError) as oe:
            await ask(stack, ingress, request)
        assert oe.value.status_code == 502 and f"{provider} returned 500" in oe.value.message
    elif ingress == "anthropic":
        with pytest.raises(anthropic.InternalServerError) as ae:
            await ask(stack, ingress, request)
        assert ae.value.status_code == 502 and f"{provider} returned 500" in ae.value.message
    else:
        with pytest.raises(ClientError) as be:
            await ask(stack, ingress, request)
        assert be.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert f"{provider} returned 500" in be.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"), ("local/qwen2.5:7b", "qwen2.5:7b")],
)
async def test_openai_compatible_providers_by_prefix(stack: Any, model: str, upstream_model: str) -> None:
    """Groq and ORQEN_COMPATIBLE_PROVIDERS entries get the model without their prefix, with their own key."""
    result = await ask(stack, "anthropic", Ask(model=model, turns=[Turn("user", "hello")]))
    assert result.text == "echo: hello"
    sent = stack.upstreams.openai.requests[-1]
    assert sent["body"]["model"] == upstream_model
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"


async def test_orqen_tool_examples_are_consumed_never_forwarded(stack: Any) -> None:
    """`x-orqen-examples` feeds tool routing; the fakes reject unknown fields at any depth."""
    examples = ["what's the weather in Rome", "is it raining in Oslo"]
    openai_client = OpenAISDK(stack.info.edge_url, stack.info.api_key).client
    function = {"name": "get_weather", "parameters": WEATHER["schema"], "x-orqen-examples": examples}
    await asyncio.to_thread(
        openai_client.chat.completions.create,
        model=PROVIDERS["openai"],
        messages=[{"role": "user", "content": "hello"}],
        tools=[{"type": "function", "function": function}],  # type: ignore[list-item]
    )
    assert stack.upstreams.openai.requests[-1]["body"]["tools"][0]["function"] == {
        "name": "get_weather",
        "parameters": WEATHER["schema"],
    }
    anthropic_client = AnthropicSDK(stack.info.edge_url, stack.info.api_key).client
    await asyncio.to_thread(
        anthropic_client.messages.create,
        model=PROVIDERS["anthropic"],
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER["schema"], "x-orqen-examples": examples}],  # type: ignore[typeddict-unknown-key]
    )
    assert stack.upstreams.anthropic.requests[-1]["body"]["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER["schema"]}
    ]
