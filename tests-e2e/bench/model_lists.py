"""What live model lists cost an orqen/* request: `make bench-model-lists`.

Dispatch's `AvailableModels` over the fake providers (OpenAI listing 120 models, Anthropic,
Bedrock, and an account's own OpenAI-compatible server listing 60) and a real Redis: the first
call fetches and profiles every list; each later call within the TTL reads the copies with one
MGET and reuses the profiles. Prints the cold time, the warm times (p50/p95 over the calls) with
and without turning them into ListModels entries, and how many times the providers were asked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from redis.asyncio import Redis

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.model_lists import OPENAI_MODELS
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from orqen_common.prices import Prices
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.available_models import AvailableModels, model_infos
from orqen_dispatch.model_list_cache import ModelListCache
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.router import ProviderRouter
from orqen_testing.servers import ServerPool

KEY = "sk-bench"
OPENAI_LIST = (*OPENAI_MODELS, *(f"gpt-4o-2024-{i:02d}-{j:02d}" for i in range(1, 13) for j in range(1, 10)))[:120]
CUSTOM_LIST = tuple(f"llama-3.1-{size}b-instruct-q{q}" for size in (8, 70) for q in range(30))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(calls: int, redis_url: str) -> None:
    openai, custom = FakeOpenAI(KEY, models=OPENAI_LIST), FakeOpenAI(KEY, models=CUSTOM_LIST)
    anthropic, bedrock = FakeAnthropic(KEY), FakeBedrock("AKIABENCH", "bench-secret", KEY)
    with (
        BackgroundServer(openai.app()) as o,
        BackgroundServer(anthropic.app()) as a,
        BackgroundServer(bedrock.app()) as b,
        BackgroundServer(custom.app()) as c,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            router = ProviderRouter(
                {
                    "openai": OpenAICompatible("openai", http, o.url + "/v1", KEY),
                    "anthropic": AnthropicMessages("anthropic", http, a.url, KEY, 256),
                    "bedrock": BedrockConverse(
                        "bedrock", http, b.url, "us-east-1", None, None, None, KEY, control_endpoint_url=b.url
                    ),
                },
                "openai",
                lambda name: OpenAICompatible(name, http, "", None),
            )
            redis = Redis.from_url(redis_url)
            await redis.flushdb()
            cache = ModelListCache(
                redis, ttl_seconds=600, retry_seconds=30, keep_seconds=3600, fetch_timeout_seconds=10
            )
            available = AvailableModels(router, cache, {"openai", "anthropic", "bedrock"}, Prices(), {})
            config = AccountConfig({"homelab": {"api_key": KEY, "base_url": c.url + "/v1"}})

            def asked() -> int:
                fakes = (openai, anthropic, bedrock, custom)
                return sum(r["path"].endswith(("models", "inference-profiles")) for f in fakes for r in f.requests)

            started = time.perf_counter()
            first = await available.of(config)
            cold_ms = (time.perf_counter() - started) * 1000
            asked_cold = asked()
            warm: list[float] = []
            listed: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                got = await available.of(config)
                warm.append((time.perf_counter() - started) * 1000)
                model_infos(got, frozenset(), {})
                listed.append((time.perf_counter() - started) * 1000)
            await redis.aclose()
    chat = sum(m.kind == "chat" for m in first.models)
    print(f"providers: {len(first.lists)}; models listed: {len(first.models)} ({chat} chat)")
    print(f"cold (fetch every list, profile every model): {cold_ms:.0f} ms; provider list calls: {asked_cold}")
    print(
        f"warm AvailableModels.of over {calls} calls: p50 {statistics.median(warm):.2f} ms, "
        f"p95 {percentile(warm, 0.95):.2f} ms; with ListModels entries: p50 {statistics.median(listed):.2f} ms, "
        f"p95 {percentile(listed, 0.95):.2f} ms"
    )
    print(f"provider list calls during the warm calls: {asked() - asked_cold}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    pool = ServerPool()
    try:
        asyncio.run(run(args.calls, pool.redis_url()))
    finally:
        pool.close()


if __name__ == "__main__":
    main()
