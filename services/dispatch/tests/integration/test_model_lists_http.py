"""Providers' own model lists over HTTP from the fakes, kept in a real Redis.

Each adapter reads its provider's list in the real wire format (OpenAI-compatible, Anthropic's
pages, Bedrock's control plane signed with SigV4 or a key); the cache serves a copy within its
TTL without asking again, refreshes an old one in the background, serves the last good copy
with its age when a refresh fails, and reports a provider that never answered without entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.model_lists import ANTHROPIC_MODELS, OPENAI_MODELS
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer, free_port
from orqen_common.formats.openai import ChatRequest
from orqen_common.prices import PriceOverrides, Prices
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.available_models import AvailableModels
from orqen_dispatch.model_list_cache import ListSource, ModelListCache
from orqen_dispatch.model_profiles import ModelOverride
from orqen_dispatch.model_routing import ModelChooser
from orqen_dispatch.providers import anthropic as anthropic_adapter
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.upstream_http import AiohttpClient, open_client

OPENAI_KEY = "sk-lists-openai"
ANTHROPIC_KEY = "sk-ant-lists"
AWS_KEY_ID, AWS_SECRET, BEDROCK_KEY = "AKIALISTSTEST0000001", "lists/secret/key", "bedrock-lists-key"
CUSTOM_KEY = "sk-custom-llm"
CUSTOM_MODELS = ("llama-3.1-8b-instruct", "qwen2.5-coder-32b-instruct", "nomic-embed-text")
TTL, RETRY = 600.0, 30.0


@dataclass
class Upstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    bedrock: FakeBedrock
    custom: FakeOpenAI
    urls: dict[str, str]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    fakes = Upstreams(
        FakeOpenAI(OPENAI_KEY),
        FakeAnthropic(ANTHROPIC_KEY),
        FakeBedrock(AWS_KEY_ID, AWS_SECRET, BEDROCK_KEY),
        FakeOpenAI(CUSTOM_KEY, models=CUSTOM_MODELS),
        {},
    )
    with (
        BackgroundServer(fakes.openai.app()) as openai_server,
        BackgroundServer(fakes.anthropic.app()) as anthropic_server,
        BackgroundServer(fakes.bedrock.app()) as bedrock_server,
        BackgroundServer(fakes.custom.app()) as custom_server,
    ):
        fakes.urls.update(
            openai=openai_server.url + "/v1",
            anthropic=anthropic_server.url,
            bedrock=bedrock_server.url,
            custom=custom_server.url + "/v1",
        )
        yield fakes


@pytest.fixture
async def http() -> AsyncIterator[AiohttpClient]:
    async with open_client(10, 10) as client:
        yield client


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    await client.flushdb()
    yield client
    await client.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def bedrock(
    http: AiohttpClient, url: str, key_id: str | None, secret: str | None, bearer: str | None
) -> BedrockConverse:
    return BedrockConverse(
        "bedrock", http, "http://runtime.invalid", "us-east-1", key_id, secret, None, bearer, control_endpoint_url=url
    )


async def test_openai_and_compatible_lists_come_from_get_models(upstreams: Upstreams, http: AiohttpClient) -> None:
    listed = await OpenAICompatible("openai", http, upstreams.urls["openai"], OPENAI_KEY).list_models({})
    assert [m.id for m in listed] == list(OPENAI_MODELS)
    kinds = {m.id: m.kind for m in listed}
    assert (kinds["gpt-4o"], kinds["text-embedding-3-small"], kinds["dall-e-3"]) == ("chat", "embedding", "image")
    assert (kinds["whisper-1"], kinds["tts-1"], kinds["omni-moderation-latest"]) == ("audio", "audio", "moderation")
    # An account's own endpoint, with the base URL and key of its saved credential.
    custom = OpenAICompatible("myllm", http, "", None)
    listed = await custom.list_models({"api_key": CUSTOM_KEY, "base_url": upstreams.urls["custom"]})
    assert [(m.id, m.kind) for m in listed] == [
        ("llama-3.1-8b-instruct", "chat"),
        ("qwen2.5-coder-32b-instruct", "chat"),
        ("nomic-embed-text", "embedding"),
    ]


async def test_anthropics_list_is_read_page_after_page_with_capabilities(
    upstreams: Upstreams, http: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anthropic_adapter, "_MODELS_PAGE", 2)
    listed = await AnthropicMessages("anthropic", http, upstreams.urls["anthropic"], ANTHROPIC_KEY, 256).list_models({})
    assert [m.id for m in listed] == [m[0] for m in ANTHROPIC_MODELS]
    pages = [r["query"] for r in upstreams.anthropic.requests if r["path"] == "/v1/models"][-3:]
    assert pages == [
        {"limit": "2"},
        {"limit": "2", "after_id": "claude-sonnet-4-6"},
        {"limit": "2", "after_id": "claude-sonnet-4-5"},
    ]
    sonnet = next(m for m in listed if m.id == "claude-sonnet-4-6")
    assert (sonnet.context_window, sonnet.max_output_tokens, sonnet.vision, sonnet.legacy) == (
        1_000_000,
        64_000,
        True,
        False,
    )
    old = next(m for m in listed if m.id == "claude-3-5-haiku-20241022")
    assert (old.vision, old.legacy) == (False, True)  # deprecated: listed, never picked by a rule


@pytest.mark.parametrize("auth", ["sigv4", "bearer"])
async def test_bedrock_lists_on_demand_models_and_inference_profiles(
    upstreams: Upstreams, http: AiohttpClient, auth: str
) -> None:
    keys = (AWS_KEY_ID, AWS_SECRET, None) if auth == "sigv4" else (None, None, BEDROCK_KEY)
    listed = {m.id: m for m in await bedrock(http, upstreams.urls["bedrock"], *keys).list_models({})}
    assert set(listed) == {
        "amazon.nova-micro-v1:0",
        "amazon.nova-lite-v1:0",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "amazon.titan-embed-text-v2:0",
        # Only callable through its profile: listed by the profile's id, not the model's own.
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
    }
    assert listed["us.anthropic.claude-sonnet-4-20250514-v1:0"].vision
    assert listed["amazon.nova-lite-v1:0"].vision and not listed["amazon.nova-micro-v1:0"].vision
    assert listed["amazon.titan-embed-text-v2:0"].kind == "embedding"
    assert listed["anthropic.claude-3-5-sonnet-20240620-v1:0"].legacy
    sent = upstreams.bedrock.requests[-1]
    assert sent["path"] == "/inference-profiles"
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256" if auth == "sigv4" else "Bearer ")


async def test_a_list_is_cached_refreshed_in_the_background_and_served_from_the_last_good_copy(
    upstreams: Upstreams, http: AiohttpClient, redis: Redis
) -> None:
    clock = Clock()
    cache = ModelListCache(
        redis, ttl_seconds=TTL, retry_seconds=RETRY, keep_seconds=3600, fetch_timeout_seconds=5, clock=clock
    )
    source = ListSource(
        AnthropicMessages("anthropic", http, upstreams.urls["anthropic"], None, 256), {"api_key": ANTHROPIC_KEY}
    )
    fake = upstreams.anthropic

    def asked() -> int:
        return sum(r["path"] == "/v1/models" for r in fake.requests)

    before = asked()
    [first] = await cache.lists([source])
    assert (first.status, first.age_seconds, first.error, len(first.models)) == (
        "fresh",
        0.0,
        "",
        len(ANTHROPIC_MODELS),
    )
    clock.now += TTL - 1
    [again] = await cache.lists([source])
    assert again.status == "fresh" and again.age_seconds == TTL - 1 and asked() == before + 1  # from Redis

    # Past the TTL the old copy is served at once and refreshed behind it.
    clock.now += 2
    [old] = await cache.lists([source])
    assert old.status == "stale" and old.fetched_at == first.fetched_at
    await asyncio.sleep(0.5)
    [refreshed] = await cache.lists([source])
    assert refreshed.status == "fresh" and refreshed.fetched_at == clock.now and asked() == before + 2

    # The provider's list fails: the last good copy is served with its age and the failure.
    fake.list_error_status = 500
    try:
        clock.now += TTL + 5
        await cache.lists([source])
        await asyncio.sleep(0.5)
        [failing] = await cache.lists([source])
        assert failing.status == "stale" and failing.models == first.models
        assert failing.age_seconds == TTL + 5 and failing.error.startswith("500: ")
        assert asked() == before + 3
        clock.now += RETRY - 1  # a provider that just failed is not asked again before the retry delay
        await cache.lists([source])
        await asyncio.sleep(0.2)
        assert asked() == before + 3
    finally:
        fake.list_error_status = None
    clock.now += 2
    await cache.lists([source])
    await asyncio.sleep(0.5)
    [recovered] = await cache.lists([source])
    assert (recovered.status, recovered.error, recovered.age_seconds) == ("fresh", "", 0.0)


async def test_a_provider_that_fails_before_any_list_has_no_entries_and_says_why(
    upstreams: Upstreams, http: AiohttpClient, redis: Redis
) -> None:
    cache = ModelListCache(redis, ttl_seconds=TTL, retry_seconds=RETRY, keep_seconds=3600, fetch_timeout_seconds=5)
    wrong_key = ListSource(OpenAICompatible("openai", http, upstreams.urls["openai"], None), {"api_key": "sk-wrong"})
    unreachable = ListSource(OpenAICompatible("down", http, "http://127.0.0.1:9/v1", None), {})
    failed = await cache.lists([wrong_key, unreachable])
    assert [(p.provider, p.status, p.models, p.fetched_at) for p in failed] == [
        ("openai", "unavailable", (), 0.0),
        ("down", "unavailable", (), 0.0),
    ]
    assert failed[0].error == "401: Incorrect API key provided."
    assert failed[1].error.startswith("502: down is unreachable")


async def test_without_redis_a_replica_serves_the_copies_it_fetched(upstreams: Upstreams, http: AiohttpClient) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    cache = ModelListCache(
        unreachable, ttl_seconds=TTL, retry_seconds=RETRY, keep_seconds=3600, fetch_timeout_seconds=5
    )
    source = ListSource(OpenAICompatible("openai", http, upstreams.urls["openai"], OPENAI_KEY), {})
    asked = len(upstreams.openai.requests)
    try:
        [first] = await cache.lists([source])
        [again] = await cache.lists([source])
    finally:
        await unreachable.aclose()
    assert first.status == again.status == "fresh" and len(again.models) == len(OPENAI_MODELS)
    assert len(upstreams.openai.requests) == asked + 1  # the second came from the replica's own copy


async def test_an_accounts_own_compatible_provider_is_listed_and_routed_to(
    upstreams: Upstreams, http: AiohttpClient, redis: Redis
) -> None:
    router = ProviderRouter(
        {"openai": OpenAICompatible("openai", http, upstreams.urls["openai"], OPENAI_KEY)},
        "openai",
        lambda name: OpenAICompatible(name, http, "", None),
    )
    cache = ModelListCache(redis, ttl_seconds=TTL, retry_seconds=RETRY, keep_seconds=3600, fetch_timeout_seconds=5)
    # The operator prices the account's model (ORQEN_PRICES_FILE) and ranks it (ORQEN_MODEL_OVERRIDES).
    prices = Prices(PriceOverrides.model_validate({"myllm/llama-3.1-8b-instruct": {"input": 0.02, "output": 0.05}}))
    overrides = {"myllm/llama-3.1-8b-instruct": ModelOverride(capability=6)}
    available = AvailableModels(router, cache, {"openai"}, prices, overrides)
    config = AccountConfig({"myllm": {"api_key": CUSTOM_KEY, "base_url": upstreams.urls["custom"]}})
    models = {m.model: m for m in (await available.of(config)).models}
    assert {"myllm/llama-3.1-8b-instruct", "myllm/qwen2.5-coder-32b-instruct", "myllm/nomic-embed-text"} <= set(models)
    assert "gpt-4o-mini" in models  # the operator's OpenAI, by its bare names
    llama = models["myllm/llama-3.1-8b-instruct"]
    assert (llama.provider, llama.tier, llama.capability, llama.input, llama.priced) == ("myllm", "fast", 6, 0.02, True)
    chat = ChatRequest(model="orqen/cheap", messages=[])
    [first, *_] = ModelChooser().choose("orqen/cheap", chat, tuple(models.values()), frozenset(), {})
    assert first.model == "myllm/llama-3.1-8b-instruct"  # the cheapest, by the operator's price
    resolved, model_id = router.resolve(first.model, config.credentials.keys())
    assert (resolved.name, model_id) == ("myllm", "llama-3.1-8b-instruct")
