"""The caller's provider key on a fallback, with the real provider adapters over HTTP.

Dispatch's servicer calls the fake upstreams (tests-e2e/fakes), each of which accepts only
the key it was built with: the requested model fails (a `fake-500`, or a 401 for a caller's
key its provider does not know), and the account's fallback on another provider accepts only
the key the account saved for it. Had the caller's key gone to the fallback, it would answer 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from orqen.v1 import dispatch_pb2
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer
from orqen_dispatch.upstream_http import AiohttpClient, open_client

CALLERS_OPENAI_KEY = "sk-callers-own-openai-key"
CALLERS_ANTHROPIC_KEY = "sk-ant-callers-own-key"
SAVED_ANTHROPIC_KEY = "sk-ant-accounts-saved-key"
SAVED_BEDROCK_KEY = "ABSK-accounts-saved-bedrock-key"
OPERATOR_KEY = "operator-key-nobody-accepts"
SAVED = {
    "anthropic": {"api_key": SAVED_ANTHROPIC_KEY},
    "bedrock": {"bearer_token": SAVED_BEDROCK_KEY, "region": "us-east-1"},
}
Request = Callable[..., dispatch_pb2.CompleteRequest]


@dataclass
class Upstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    bedrock: FakeBedrock
    urls: dict[str, str]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    openai = FakeOpenAI(CALLERS_OPENAI_KEY)
    # The caller's Anthropic key is for the requested model; the account's for every other call.
    anthropic = FakeAnthropic(SAVED_ANTHROPIC_KEY)
    bedrock = FakeBedrock("AKIDNOBODY", "nobody-secret", SAVED_BEDROCK_KEY)
    with (
        BackgroundServer(openai.app()) as openai_server,
        BackgroundServer(anthropic.app()) as anthropic_server,
        BackgroundServer(bedrock.app()) as bedrock_server,
    ):
        urls = {"openai": openai_server.url + "/v1", "anthropic": anthropic_server.url, "bedrock": bedrock_server.url}
        yield Upstreams(openai, anthropic, bedrock, urls)


@pytest.fixture
async def http() -> AsyncIterator[AiohttpClient]:
    async with open_client(10, 10) as client:
        yield client


@pytest.fixture
def gateway(
    upstreams: Upstreams, http: AiohttpClient, dispatch_servicer: Callable[..., DispatchServicer]
) -> Callable[[tuple[str, ...]], DispatchServicer]:
    """`gateway(fallbacks)`: the servicer over the fakes, for an account that saved Anthropic and Bedrock keys."""
    urls = upstreams.urls
    router = ProviderRouter(
        {
            "openai": OpenAICompatible("openai", http, urls["openai"], OPERATOR_KEY),
            "anthropic": AnthropicMessages("anthropic", http, urls["anthropic"], OPERATOR_KEY, 256),
            "bedrock": BedrockConverse("bedrock", http, urls["bedrock"], "us-east-1", None, None, None, OPERATOR_KEY),
        },
        "openai",
    )

    def build(fallbacks: tuple[str, ...]) -> DispatchServicer:
        return dispatch_servicer(router, AccountConfig(SAVED, fallbacks), ("openai", "anthropic", "bedrock"))

    return build


async def test_an_anthropic_fallback_is_called_with_the_accounts_key_not_the_callers_openai_key(
    upstreams: Upstreams, gateway: Callable[[tuple[str, ...]], DispatchServicer], chat_request: Request
) -> None:
    dispatch = gateway(("claude-sonnet-4-5",))
    call = chat_request("gpt-fake-500", api_key=CALLERS_OPENAI_KEY)
    answer = await dispatch.Complete(call, None)  # type: ignore[arg-type]
    assert (answer.summary.provider, [a.status for a in answer.summary.attempts]) == ("anthropic", [500, 200])
    assert upstreams.openai.requests[-1]["headers"]["authorization"] == f"Bearer {CALLERS_OPENAI_KEY}"
    assert upstreams.anthropic.requests[-1]["headers"]["x-api-key"] == SAVED_ANTHROPIC_KEY
    assert CALLERS_OPENAI_KEY not in repr(upstreams.anthropic.requests)


async def test_a_bedrock_fallback_is_called_with_the_accounts_key_not_the_callers_anthropic_key(
    upstreams: Upstreams, gateway: Callable[[tuple[str, ...]], DispatchServicer], chat_request: Request
) -> None:
    dispatch = gateway(("bedrock/amazon.nova-lite-v1:0",))
    call = chat_request("claude-fake-500", api_key=CALLERS_ANTHROPIC_KEY)
    events = [event async for event in dispatch.Stream(call, None)]  # type: ignore[arg-type]
    summary = events[-1].summary
    assert (summary.provider, [a.status for a in summary.attempts]) == ("bedrock", [401, 200])
    bedrock = upstreams.bedrock.requests[-1]
    assert bedrock["model_id"] == "amazon.nova-lite-v1:0"
    assert bedrock["headers"]["authorization"] == f"Bearer {SAVED_BEDROCK_KEY}"
    assert CALLERS_ANTHROPIC_KEY not in repr(upstreams.bedrock.requests)
