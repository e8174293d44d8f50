"""The caller's provider key on a fallback, with the real provider adapters over HTTP.

Dispatch's servicer calls the fake upstreams (tests-e2e/fakes), each of which accepts only
the key it was built with: the requested model fails (a `fake-500`, or a 401 for a caller's
key its provider does not know), and the account's fallback on another provider accepts only
the key the account saved for it. Had the caller's key gone to the fallback, it would answer 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.catalogue import load_catalogue
from orqen_common.context import Principal, principal_var
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.credentials import SavedCredentials
from orqen_dispatch.latency import ModelStats
from orqen_dispatch.model_routing import ModelChooser
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.proxy import ProxyService
from orqen_dispatch.resilience import CircuitBreakers, Dispatcher, RetryPolicy
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer

ACCOUNT = "00000000-0000-0000-0000-0000000fa11b"
CALLERS_OPENAI_KEY = "sk-callers-own-openai-key"
CALLERS_ANTHROPIC_KEY = "sk-ant-callers-own-key"
SAVED_ANTHROPIC_KEY = "sk-ant-accounts-saved-key"
SAVED_BEDROCK_KEY = "ABSK-accounts-saved-bedrock-key"
OPERATOR_KEY = "operator-key-nobody-accepts"


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


class Configs:
    """AccountConfigs' interface: an account that saved Anthropic and Bedrock keys, with fallbacks."""

    def __init__(self, fallbacks: tuple[str, ...]) -> None:
        saved: SavedCredentials = {
            "anthropic": {"api_key": SAVED_ANTHROPIC_KEY},
            "bedrock": {"bearer_token": SAVED_BEDROCK_KEY, "region": "us-east-1"},
        }
        self.config = AccountConfig(saved, fallbacks)

    async def get(self, account_id: str) -> AccountConfig:
        return self.config


class NoLatency:
    """LatencyStats' interface, with nothing measured."""

    async def snapshot(self, models: Iterable[str]) -> dict[str, ModelStats]:
        return {}

    async def record(self, model: str, duration_ms: float, ok: bool) -> None:
        return None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def servicer(upstreams: Upstreams, http: httpx.AsyncClient, fallbacks: tuple[str, ...]) -> DispatchServicer:
    principal_var.set(Principal("service"))
    urls = upstreams.urls
    router = ProviderRouter(
        {
            "openai": OpenAICompatible("openai", http, urls["openai"], OPERATOR_KEY),
            "anthropic": AnthropicMessages("anthropic", http, urls["anthropic"], OPERATOR_KEY, 256),
            "bedrock": BedrockConverse("bedrock", http, urls["bedrock"], "us-east-1", None, None, None, OPERATOR_KEY),
        },
        "openai",
    )
    catalogue = load_catalogue()
    dispatcher = Dispatcher(RetryPolicy(max_attempts=1), CircuitBreakers(threshold=100))
    configs = Configs(fallbacks)
    return DispatchServicer(
        router,
        ModelChooser(catalogue, router),
        catalogue,
        dispatcher,
        configs,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # the store only saves; no save here
        NoLatency(),  # type: ignore[arg-type]
        ("openai", "anthropic", "bedrock"),
        ProxyService(router, dispatcher, configs),  # type: ignore[arg-type]
    )


def request(model: str, provider_key: str) -> dispatch_pb2.CompleteRequest:
    chat = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return dispatch_pb2.CompleteRequest(
        context=common_pb2.RequestContext(request_id="req_fallback_keys", account_id=ACCOUNT, ingress="openai"),
        chat_json=orjson.dumps(chat),
        credentials={"api_key": provider_key},
    )


async def test_an_anthropic_fallback_is_called_with_the_accounts_key_not_the_callers_openai_key(
    upstreams: Upstreams, http: httpx.AsyncClient
) -> None:
    dispatch = servicer(upstreams, http, fallbacks=("claude-sonnet-4-5",))
    answer = await dispatch.Complete(request("gpt-fake-500", CALLERS_OPENAI_KEY), None)  # type: ignore[arg-type]
    assert (answer.summary.provider, [a.status for a in answer.summary.attempts]) == ("anthropic", [500, 200])
    assert upstreams.openai.requests[-1]["headers"]["authorization"] == f"Bearer {CALLERS_OPENAI_KEY}"
    assert upstreams.anthropic.requests[-1]["headers"]["x-api-key"] == SAVED_ANTHROPIC_KEY
    assert CALLERS_OPENAI_KEY not in repr(upstreams.anthropic.requests)


async def test_a_bedrock_fallback_is_called_with_the_accounts_key_not_the_callers_anthropic_key(
    upstreams: Upstreams, http: httpx.AsyncClient
) -> None:
    dispatch = servicer(upstreams, http, fallbacks=("bedrock/amazon.nova-lite-v1:0",))
    chunks = [
        event
        async for event in dispatch.Stream(request("claude-fake-500", CALLERS_ANTHROPIC_KEY), None)  # type: ignore[arg-type]
    ]
    summary = chunks[-1].summary
    assert (summary.provider, [a.status for a in summary.attempts]) == ("bedrock", [401, 200])
    bedrock = upstreams.bedrock.requests[-1]
    assert bedrock["model_id"] == "amazon.nova-lite-v1:0"
    assert bedrock["headers"]["authorization"] == f"Bearer {SAVED_BEDROCK_KEY}"
    assert CALLERS_ANTHROPIC_KEY not in repr(upstreams.bedrock.requests)
