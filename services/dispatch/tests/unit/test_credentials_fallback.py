"""A caller's own provider key goes only to the provider its model names, never to a fallback on another.

The servicer is driven through Complete and Stream with recording providers: the requested
model's provider fails, the account's fallback chain moves on to other providers, and each
call's credentials are checked. The caller's key (X-Orqen-Provider-Key, "api_key") is meant
for one provider; anywhere else the account's saved credential or the operator's applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from orqen.v1 import dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import (
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
)
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.credentials import SavedCredentials
from orqen_dispatch.providers.base import Completion, StreamState, UpstreamError
from orqen_dispatch.providers.model_lists import ListedModel
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer

# One chat model each provider lists.
_LISTED = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "bedrock": "amazon.nova-lite-v1:0", "groq": "x"}
CALLERS_KEY = "sk-callers-own-key-for-one-provider"
SAVED: SavedCredentials = {
    "anthropic": {"api_key": "sk-ant-accounts-saved"},
    "bedrock": {"bearer_token": "ABSK-accounts-saved", "region": "eu-west-1"},
}
SAVED_ANTHROPIC = {"api_key": "sk-ant-accounts-saved"}
SAVED_BEDROCK = {"aws_bearer_token_bedrock": "ABSK-accounts-saved", "aws_region_name": "eu-west-1"}
OPERATORS: dict[str, str] = {}  # nothing saved: the provider's own environment applies
Request = Callable[..., dispatch_pb2.CompleteRequest]


@dataclass
class RecordingProvider:
    """Records the credentials of every call; models listed in `failing` answer 500."""

    name: str
    failing: frozenset[str] = frozenset()
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    listed_with: list[dict[str, str]] = field(default_factory=list)

    async def list_models(self, credentials: Mapping[str, str]) -> list[ListedModel]:
        self.listed_with.append(dict(credentials))
        return [ListedModel(id=_LISTED[self.name])]

    def _call(self, model: str, credentials: Mapping[str, str]) -> None:
        self.calls.append((model, dict(credentials)))
        if model in self.failing:
            raise UpstreamError(500, f"{self.name} is down")

    async def complete(self, chat: object, model: str, credentials: Mapping[str, str]) -> Completion:
        self._call(model, credentials)
        body = ChatCompletion(id="c", created=0, model=model, choices=[Choice(message=AnswerMessage(content="ok"))])
        return Completion(body=body, usage=TokenUsage(), status=200)

    async def stream(
        self, chat: object, model: str, credentials: Mapping[str, str], state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        self._call(model, credentials)
        state.status = 200
        yield ChatCompletionChunk(id="c", created=0, model=model, choices=[ChunkChoice(delta=Delta(content="ok"))])


@dataclass
class Gateway:
    servicer: DispatchServicer
    providers: dict[str, RecordingProvider]

    def calls(self, provider: str) -> list[tuple[str, dict[str, str]]]:
        return self.providers[provider].calls


@pytest.fixture
def gateway(dispatch_servicer: Callable[..., DispatchServicer]) -> Callable[..., Gateway]:
    """`gateway(fallbacks, failing)`: an account that saved Anthropic and Bedrock keys; the operator connects none."""

    def build(fallbacks: tuple[str, ...] = (), failing: Iterable[str] = ()) -> Gateway:
        down = frozenset(failing)
        providers = {name: RecordingProvider(name, down) for name in ("openai", "anthropic", "bedrock", "groq")}
        router = ProviderRouter(dict(providers), "openai")
        return Gateway(dispatch_servicer(router, AccountConfig(SAVED, fallbacks), ()), providers)

    return build


async def answered_by(g: Gateway, call: dispatch_pb2.CompleteRequest, streamed: bool) -> str:
    """The provider that answered, through Complete or Stream."""
    if not streamed:
        return (await g.servicer.Complete(call, None)).summary.provider  # type: ignore[arg-type]
    events = [event async for event in g.servicer.Stream(call, None)]  # type: ignore[arg-type]
    return events[-1].summary.provider


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_fallback_on_another_provider_gets_the_accounts_key_never_the_callers(
    gateway: Callable[..., Gateway], chat_request: Request, streamed: bool
) -> None:
    g = gateway(fallbacks=("gpt-4o-mini", "claude-haiku-4-5"), failing={"gpt-4o", "gpt-4o-mini"})
    assert await answered_by(g, chat_request("gpt-4o", api_key=CALLERS_KEY), streamed) == "anthropic"
    # The caller's key is for OpenAI: the requested model and a fallback on OpenAI get it...
    assert g.calls("openai") == [("gpt-4o", {"api_key": CALLERS_KEY}), ("gpt-4o-mini", {"api_key": CALLERS_KEY})]
    # ...and Anthropic, another provider, gets the account's own key.
    assert g.calls("anthropic") == [("claude-haiku-4-5", SAVED_ANTHROPIC)]


async def test_a_bedrock_fallback_never_takes_the_callers_key_as_its_api_key(
    gateway: Callable[..., Gateway], chat_request: Request
) -> None:
    g = gateway(fallbacks=("bedrock/amazon.nova-lite-v1:0",), failing={"claude-haiku-4-5"})
    assert await answered_by(g, chat_request("claude-haiku-4-5", api_key=CALLERS_KEY), False) == "bedrock"
    assert g.calls("anthropic") == [("claude-haiku-4-5", {"api_key": CALLERS_KEY})]
    assert g.calls("bedrock") == [("amazon.nova-lite-v1:0", SAVED_BEDROCK)]


async def test_the_callers_aws_keys_go_only_to_bedrock(gateway: Callable[..., Gateway], chat_request: Request) -> None:
    aws = {"aws_access_key_id": "AKIACALLER", "aws_secret_access_key": "caller-secret"}
    g = gateway(fallbacks=("gpt-4o-mini",), failing={"amazon.nova-lite-v1:0"})
    assert await answered_by(g, chat_request("bedrock/amazon.nova-lite-v1:0", api_key=CALLERS_KEY, **aws), False) == (
        "openai"
    )
    assert g.calls("bedrock") == [("amazon.nova-lite-v1:0", {**aws, "aws_region_name": "eu-west-1"})]
    assert g.calls("openai") == [("gpt-4o-mini", OPERATORS)]


@pytest.mark.parametrize("model", ["orqen/cheap", "orqen/fast", "orqen/capable", "orqen/auto"])
async def test_a_routing_string_names_no_provider_so_no_routed_call_gets_the_callers_key(
    gateway: Callable[..., Gateway], chat_request: Request, model: str
) -> None:
    g = gateway()
    answered = await answered_by(g, chat_request(model, api_key=CALLERS_KEY), False)
    assert answered in SAVED
    [(_, credentials)] = g.calls(answered)
    assert credentials == {"anthropic": SAVED_ANTHROPIC, "bedrock": SAVED_BEDROCK}[answered]
    # The lists it chose from were read with the account's saved keys, never the caller's.
    assert g.providers["anthropic"].listed_with == [SAVED_ANTHROPIC]
    assert g.providers["bedrock"].listed_with == [SAVED_BEDROCK]
