"""Which credentials each call uses, and the providers using them."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from orqen_common.formats.openai import ChatRequest, UserMessage
from orqen_dispatch.credentials.keyring import KeyRing
from orqen_dispatch.credentials.precedence import merge
from orqen_dispatch.credentials.validation import validate_secret
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_testing.mock_upstream import MockResponse, MockUpstream, SentRequest

ACCOUNT = "acct-1"


def ring() -> KeyRing:
    return KeyRing.from_setting("k1:" + base64.b64encode(bytes(range(32))).decode())


_SAVED_IAM = {"access_key_id": "AKIASAVED", "secret_access_key": "saved-secret", "region": "eu-west-1"}
_SAVED_IAM_KEYS = {
    "aws_access_key_id": "AKIASAVED",
    "aws_secret_access_key": "saved-secret",
    "aws_region_name": "eu-west-1",
}


@pytest.mark.parametrize(
    ("per_request", "saved", "provider", "expected"),
    [
        # Nothing given: the provider falls back to the operator's environment.
        ({}, None, "openai", {}),
        ({}, None, "bedrock", {}),
        # The account's saved credential, mapped to the keys the provider reads.
        ({}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
        (
            {},
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
            "together",
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
        ),
        ({}, {**_SAVED_IAM, "session_token": "tok"}, "bedrock", {**_SAVED_IAM_KEYS, "aws_session_token": "tok"}),
        (
            {},
            {"bearer_token": "ABSKsaved", "region": "us-west-2"},
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKsaved", "aws_region_name": "us-west-2"},
        ),
        # The caller's key wins; the saved base_url still says where the provider is.
        ({"api_key": "sk-caller"}, {"api_key": "sk-saved"}, "anthropic", {"api_key": "sk-caller"}),
        (
            {"api_key": "sk-caller"},
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
            "together",
            {"api_key": "sk-caller", "base_url": "https://llm.example/v1"},
        ),
        # A request can never point a provider elsewhere, nor send another provider's keys.
        ({"base_url": "https://attacker.example/v1"}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
        ({"aws_access_key_id": "AKIACALLER", "aws_secret_access_key": "s"}, None, "openai", {}),
        # The caller's AWS keys replace the saved ones whole (never a mix), the saved region stays.
        (
            {"aws_bearer_token_bedrock": "ABSKcaller"},
            _SAVED_IAM,
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKcaller", "aws_region_name": "eu-west-1"},
        ),
        (
            {"aws_access_key_id": "AKIACALLER", "aws_secret_access_key": "caller-secret"},
            {"bearer_token": "ABSKsaved", "region": "us-west-2"},
            "bedrock",
            {
                "aws_access_key_id": "AKIACALLER",
                "aws_secret_access_key": "caller-secret",
                "aws_region_name": "us-west-2",
            },
        ),
        # Only a region from the caller: the saved keys in the caller's region.
        (
            {"aws_region_name": "ap-south-1"},
            _SAVED_IAM,
            "bedrock",
            {**_SAVED_IAM_KEYS, "aws_region_name": "ap-south-1"},
        ),
        # The provider key header for a Bedrock model is a Bedrock API key.
        (
            {"api_key": "ABSKheader"},
            _SAVED_IAM,
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKheader", "aws_region_name": "eu-west-1"},
        ),
        # Empty values count as absent.
        ({"api_key": ""}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
    ],
)
def test_merge_precedence(
    per_request: dict[str, str], saved: dict[str, str] | None, provider: str, expected: dict[str, str]
) -> None:
    assert merge(per_request, saved, provider, provider) == expected


@pytest.mark.parametrize(
    ("per_request", "saved", "provider", "requested", "expected"),
    [
        # A fallback on another provider: the account's key, or the operator's (empty).
        ({"api_key": "sk-caller"}, {"api_key": "sk-ant-saved"}, "anthropic", "openai", {"api_key": "sk-ant-saved"}),
        ({"api_key": "sk-caller"}, None, "groq", "openai", {}),
        # Never a Bedrock API key either: the saved one, or the operator's AWS keys.
        ({"api_key": "sk-caller"}, {"bearer_token": "ABSKsaved"}, "bedrock", "anthropic",
         {"aws_bearer_token_bedrock": "ABSKsaved"}),
        ({"api_key": "sk-caller"}, None, "bedrock", "openai", {}),
        # A routing string names no provider: no routed call gets the key.
        ({"api_key": "sk-caller"}, {"api_key": "sk-saved"}, "openai", None, {"api_key": "sk-saved"}),
        # The aws_* fields are Bedrock's own: Bedrock takes them wherever the request started.
        ({"api_key": "sk-caller", "aws_bearer_token_bedrock": "ABSKcaller"}, None, "bedrock", "openai",
         {"aws_bearer_token_bedrock": "ABSKcaller"}),
    ],
)  # fmt: skip
def test_the_callers_provider_key_goes_only_to_the_provider_its_model_names(
    per_request: dict[str, str],
    saved: dict[str, str] | None,
    provider: str,
    requested: str | None,
    expected: dict[str, str],
) -> None:
    assert merge(per_request, saved, provider, requested) == expected


# --- providers use the call's credentials ----------------------------------------------

CHAT = ChatRequest(model="m", messages=[UserMessage(content="hi")])


class Recorder:
    """A mock upstream that records each request and answers with `body`."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.requests: list[SentRequest] = []

    def client(self) -> MockUpstream:
        return MockUpstream(self.handle)

    def handle(self, request: SentRequest) -> MockResponse:
        self.requests.append(request)
        return MockResponse(200, content=orjson.dumps(self.body), headers={"content-type": "application/json"})


OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
BEDROCK_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    "metrics": {"latencyMs": 1},
}


async def test_an_accounts_saved_compatible_provider_is_called_at_its_url_with_its_key() -> None:
    saved = ring().open(
        ring().seal(
            validate_secret("together", "", {"api_key": "tgp-saved-key"}, "https://llm.example/v1").sealed_fields,
            ACCOUNT,
            "together",
        ),
        ACCOUNT,
        "together",
    )
    upstream = Recorder(OPENAI_ANSWER)
    provider = OpenAICompatible("together", upstream.client(), "https://operator.example/v1", "sk-operator")
    await provider.complete(CHAT, "m", merge({}, saved, "together", "together"))
    await provider.complete(CHAT, "m", merge({"api_key": "sk-header"}, saved, "together", "together"))
    await provider.complete(CHAT, "m", merge({}, None, "together", "together"))
    sent = [(str(r.url), r.headers["authorization"]) for r in upstream.requests]
    assert sent == [
        ("https://llm.example/v1/chat/completions", "Bearer tgp-saved-key"),
        ("https://llm.example/v1/chat/completions", "Bearer sk-header"),
        ("https://operator.example/v1/chat/completions", "Bearer sk-operator"),
    ]


async def test_anthropic_uses_the_saved_key_over_the_operators() -> None:
    upstream = Recorder(ANTHROPIC_ANSWER)
    provider = AnthropicMessages("anthropic", upstream.client(), "https://anthropic.test", "sk-ant-operator", 1024)
    await provider.complete(CHAT, "m", merge({}, {"api_key": "sk-ant-saved"}, "anthropic", "anthropic"))
    await provider.complete(CHAT, "m", merge({}, None, "anthropic", "anthropic"))
    assert [r.headers["x-api-key"] for r in upstream.requests] == ["sk-ant-saved", "sk-ant-operator"]


async def test_bedrock_uses_the_saved_api_key_and_region_over_the_operators_keys() -> None:
    upstream = Recorder(BEDROCK_ANSWER)
    provider = BedrockConverse(
        "bedrock", upstream.client(), None, "us-east-1", "AKIAOPERATOR", "operator-secret", None, None
    )
    saved = {"bearer_token": "ABSKsavedkey", "region": "eu-central-1"}
    await provider.complete(CHAT, "anthropic.claude-3-haiku", merge({}, saved, "bedrock", "bedrock"))
    request = upstream.requests[0]
    assert request.headers["authorization"] == "Bearer ABSKsavedkey"
    assert request.url.host == "bedrock-runtime.eu-central-1.amazonaws.com"
