"""Load balancing through the servicer, over HTTP to two fake OpenAI-compatible base URLs, with real Redis.

Two fakes stand for two deployments of one logical model ("vllm-a" and "vllm-b", the
operator's OpenAI-compatible providers). One is put under a storm of 500s to see it ejected,
skipped while it cools and probed back; the rate limits run in the session's Redis. Chance is
a seeded RNG and the balancer's clock is moved by hand; no test reads how long anything took.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import orjson
import pytest
from redis.asyncio import Redis

from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.scenario import Fault
from fakes.serve import BackgroundServer
from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.context import Principal, principal_var
from orqen_common.deployments import BalancedModel, Deployment
from orqen_common.errors import OrqenError
from orqen_common.prices import Prices
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.available_models import AvailableModels
from orqen_dispatch.balancer import DEPLOYMENT_EJECTED, DEPLOYMENT_RATE_LIMITED, Balancer, EjectionPolicy
from orqen_dispatch.deployments import LoadBalancing
from orqen_dispatch.latency import LatencyStats
from orqen_dispatch.model_list_cache import ModelListCache
from orqen_dispatch.model_routing import ModelChooser
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.proxy import ProxyService
from orqen_dispatch.resilience import CircuitBreakers, Dispatcher, RetryPolicy
from orqen_dispatch.response_cache import ResponseCache, ResponseCacheSettings
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer
from orqen_dispatch.upstream_http import AiohttpClient, open_client

KEY = "sk-upstream"
AWS_KEY_ID, AWS_SECRET = "AKIDBALANCE", "balance-secret"
ACCOUNT = "00000000-0000-0000-0000-00000000ba1a"
UPSTREAM_MODEL = "meta-llama/Llama-3.3-70B-Instruct"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Configs:
    def __init__(self, config: AccountConfig) -> None:
        self.config = config

    async def get(self, account_id: str) -> AccountConfig:
        return self.config


@dataclass
class Fakes:
    a: FakeOpenAI
    b: FakeOpenAI
    bedrock: FakeBedrock
    urls: dict[str, str]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    a, b, bedrock = FakeOpenAI(KEY), FakeOpenAI(KEY), FakeBedrock(AWS_KEY_ID, AWS_SECRET, "unused-bearer")
    with (
        BackgroundServer(a.app()) as server_a,
        BackgroundServer(b.app()) as server_b,
        BackgroundServer(bedrock.app()) as server_bedrock,
    ):
        urls = {"vllm-a": server_a.url + "/v1", "vllm-b": server_b.url + "/v1", "bedrock": server_bedrock.url}
        yield Fakes(a, b, bedrock, urls)


@pytest.fixture(autouse=True)
def calm(fakes: Fakes) -> Iterator[None]:
    for fake in (fakes.a, fakes.b, fakes.bedrock):
        fake.requests.clear()
    yield
    for fake in (fakes.a, fakes.b, fakes.bedrock):
        fake.faults.calm()


@pytest.fixture
async def http() -> AsyncIterator[AiohttpClient]:
    async with open_client(10, 10) as client:
        yield client


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


@dataclass
class Gateway:
    servicer: DispatchServicer
    clock: Clock
    sleeps: Sleeps
    balancer: Balancer
    latency: LatencyStats

    async def complete(self, model: str) -> dispatch_pb2.DispatchSummary:
        answer = await self.servicer.Complete(_request(model), None)  # type: ignore[arg-type]
        return answer.summary

    async def idle(self) -> None:
        """Let the balancer's background writes (token charges) and the latency figures land."""
        await asyncio.gather(*self.balancer._background)
        await self.latency.flush()


def gateway(
    fakes: Fakes, http: AiohttpClient, redis: Redis, *models: BalancedModel, account_models: bool = False
) -> Gateway:
    """The servicer over both fakes; `models` are the operator's, or the account's with `account_models`."""
    principal_var.set(Principal("service"))
    providers = {"openai": OpenAICompatible("openai", http, fakes.urls["vllm-a"], KEY)}
    providers |= {name: OpenAICompatible(name, http, url, KEY) for name, url in fakes.urls.items() if "vllm" in name}
    # One Bedrock endpoint stands for every region: SigV4 names the region each call was signed for.
    providers["bedrock"] = BedrockConverse(
        "bedrock", http, fakes.urls["bedrock"], "us-east-1", AWS_KEY_ID, AWS_SECRET, None, None
    )
    router = ProviderRouter(providers, "openai")  # type: ignore[arg-type]
    sleeps, clock = Sleeps(), Clock()
    lists = ModelListCache(redis, ttl_seconds=600, retry_seconds=30, keep_seconds=3600, fetch_timeout_seconds=5)
    dispatcher = Dispatcher(RetryPolicy(max_attempts=3), CircuitBreakers(threshold=1), sleep=sleeps)
    latency = LatencyStats(redis)
    balancer = Balancer(redis, latency, EjectionPolicy(5.0, 60.0), rng=random.Random(20), clock=clock)
    by_name = {m.model: m for m in models}
    config = AccountConfig({}, balanced_models=by_name if account_models else {})
    configs = Configs(config)
    servicer = DispatchServicer(
        router,
        ModelChooser(),
        dispatcher,
        configs,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # nothing here saves a credential
        latency,
        AvailableModels(router, lists, ("openai", "vllm-a", "vllm-b", "bedrock"), Prices(), {}),
        ProxyService(router, dispatcher, configs),  # type: ignore[arg-type]
        ResponseCache(redis, ResponseCacheSettings()),
        LoadBalancing(balancer, {} if account_models else by_name),
    )
    return Gateway(servicer, clock, sleeps, balancer, latency)


def chats(fake: FakeOpenAI) -> list[dict[str, object]]:
    """The chat calls a fake took (the status endpoint also reads its model list)."""
    return [r for r in fake.requests if str(r["path"]).endswith("/chat/completions")]


def _request(model: str) -> dispatch_pb2.CompleteRequest:
    chat = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return dispatch_pb2.CompleteRequest(
        context=common_pb2.RequestContext(request_id="req_balance", account_id=ACCOUNT, ingress="openai"),
        chat_json=orjson.dumps(chat),
    )


def two(
    model: str, strategy: str = "weighted", a: dict[str, int] | None = None, b: dict[str, int] | None = None
) -> BalancedModel:
    return BalancedModel(
        model,
        strategy,
        (
            Deployment("a", "vllm-a", UPSTREAM_MODEL, **(a or {})),
            Deployment("b", "vllm-b", UPSTREAM_MODEL, **(b or {})),
        ),
    )


def trail(summary: dispatch_pb2.DispatchSummary) -> list[tuple[str, int, str]]:
    return [(a.deployment, a.status, a.reason) for a in summary.attempts]


async def test_requests_are_spread_by_weight_and_each_attempt_names_its_deployment(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    gate = gateway(fakes, http, redis, two("llama-weighted", a={"weight": 1}, b={"weight": 3}))
    requests = 800
    for _ in range(requests):
        summary = await gate.complete("llama-weighted")
        (attempt,) = summary.attempts
        assert (attempt.provider, attempt.model, attempt.status) == (f"vllm-{attempt.deployment}", UPSTREAM_MODEL, 200)
    counts = {"a": len(chats(fakes.a)), "b": len(chats(fakes.b))}
    assert sum(counts.values()) == requests
    # A binomial share of 1/4: 5 standard deviations are about 61 requests either side of 200.
    assert abs(counts["a"] - requests / 4) <= 5 * (requests * 0.25 * 0.75) ** 0.5, counts
    assert all(r["body"]["model"] == UPSTREAM_MODEL for r in chats(fakes.a) + chats(fakes.b))


async def test_a_failing_deployment_is_ejected_skipped_while_it_cools_and_probed_back(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    gate = gateway(fakes, http, redis, two("llama-eject"))
    fakes.b.faults.storm([Fault(error_status=500)])

    summaries = [await gate.complete("llama-eject") for _ in range(40)]
    # Every request answered by a; b was called once, failed, and was skipped from then on.
    assert all(s.provider == "vllm-a" and s.upstream_status == 200 for s in summaries)
    assert len(chats(fakes.b)) == 1
    failed_over = [trail(s) for s in summaries if len(s.attempts) > 1]
    assert failed_over == [[("b", 500, "requested"), ("a", 200, "failover")]]
    assert gate.sleeps.waits == []  # no backoff: the next deployment was tried at once
    assert (await status(gate, "llama-eject"))["b"].state == "ejected"

    gate.clock.now += 5.0  # cooled: the next request probes b, which still fails
    probe = await gate.complete("llama-eject")
    assert trail(probe) == [("b", 500, "requested"), ("a", 200, "failover")]
    gate.clock.now += 5.0  # the second ejection is twice as long: b is still out
    assert trail(await gate.complete("llama-eject")) == [("a", 200, "requested")]
    assert len(chats(fakes.b)) == 2

    fakes.b.faults.calm()
    gate.clock.now += 5.0
    assert trail(await gate.complete("llama-eject")) == [("b", 200, "requested")]  # the probe answers
    assert (await status(gate, "llama-eject"))["b"].state == "healthy"
    later = [(await gate.complete("llama-eject")).attempts[0].deployment for _ in range(200)]
    assert 60 <= later.count("b") <= 140  # back to its half of the traffic


async def test_a_stream_fails_over_to_the_next_deployment_before_its_first_chunk(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    gate = gateway(fakes, http, redis, two("llama-stream", a={"weight": 1}, b={"weight": 1000}))
    fakes.b.faults.storm([Fault(error_status=503)])
    events = [e async for e in gate.servicer.Stream(_request("llama-stream"), None)]  # type: ignore[arg-type]
    text = "".join(
        choice["delta"].get("content") or "" for e in events[:-1] for choice in orjson.loads(e.chunk_json)["choices"]
    )  # a chunk a message: the request does not ask for batches
    summary = events[-1].summary
    assert (text, summary.provider, summary.usage.output_tokens) == ("echo: hello", "vllm-a", 7)
    assert trail(summary) == [("b", 503, "requested"), ("a", 200, "failover")]
    assert (await status(gate, "llama-stream"))["a"].in_flight == 0  # counted out when the stream ended


async def test_bedrock_in_two_regions_each_call_signed_for_its_deployments_region(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    regions = BalancedModel(
        "claude-regions",
        "weighted",
        (
            Deployment("east", "bedrock", "anthropic.claude-east", region="us-east-1", weight=1000),
            Deployment("west", "bedrock", "anthropic.claude-west", region="us-west-2", weight=1),
        ),
    )
    gate = gateway(fakes, http, redis, regions)
    fakes.bedrock.faults.storm([Fault(error_status=503)], model="anthropic.claude-east")
    summary = await gate.complete("claude-regions")
    assert trail(summary) == [("east", 503, "requested"), ("west", 200, "failover")]
    signed_for = [
        (r["model_id"], r["headers"]["authorization"].split("Credential=")[1].split("/")[2])
        for r in fakes.bedrock.requests
    ]
    assert signed_for == [("anthropic.claude-east", "us-east-1"), ("anthropic.claude-west", "us-west-2")]


async def test_when_every_deployment_is_ejected_the_caller_gets_a_503_naming_them(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    gate = gateway(fakes, http, redis, two("llama-down"))
    fakes.a.faults.storm([Fault(error_status=503)])
    fakes.b.faults.storm([Fault(error_status=502)])
    with pytest.raises(OrqenError) as first:
        await gate.complete("llama-down")
    assert first.value.http_status == 502  # the last upstream error, as without balancing
    with pytest.raises(OrqenError) as second:
        await gate.complete("llama-down")
    assert second.value.http_status == 503
    assert DEPLOYMENT_EJECTED in str(second.value)
    assert second.value.retry_after is not None and 0 < second.value.retry_after <= 5.0
    detail = dispatch_pb2.DispatchSummary.FromString(second.value.detail or b"")
    assert sorted((a.deployment, a.status, a.error) for a in detail.attempts) == [
        ("a", 503, DEPLOYMENT_EJECTED),
        ("b", 503, DEPLOYMENT_EJECTED),
    ]
    assert len(chats(fakes.a)) + len(chats(fakes.b)) == 2  # skipped ones cost no call


async def test_a_deployment_over_its_rpm_is_skipped_with_a_429_and_the_other_takes_the_call(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    model = two("llama-rpm", a={"weight": 1000, "rpm": 2}, b={"weight": 1})
    gate = gateway(fakes, http, redis, model, account_models=True)
    trails = [trail(await gate.complete("llama-rpm")) for _ in range(4)]
    assert trails[:2] == [[("a", 200, "requested")]] * 2
    for skipped in trails[2:]:
        assert skipped == [("a", 429, "requested"), ("b", 200, "failover")]
    summary = await gate.complete("llama-rpm")
    assert summary.attempts[0].error.startswith(DEPLOYMENT_RATE_LIMITED)
    assert len(chats(fakes.a)) == 2
    # The limit is kept in Redis, so a second dispatch process sees the same budget spent.
    other = gateway(fakes, http, redis, model, account_models=True)
    assert trail(await other.complete("llama-rpm"))[0] == ("a", 429, "requested")


async def test_tokens_are_charged_to_the_deployment_that_answered(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    # Every fake answer reports 42 + 7 tokens: after two answers the budget of 60 is spent.
    gate = gateway(fakes, http, redis, two("llama-tpm", a={"weight": 1000, "tpm": 60}, b={"weight": 1}))
    assert trail(await gate.complete("llama-tpm")) == [("a", 200, "requested")]
    await gate.idle()
    assert trail(await gate.complete("llama-tpm")) == [("a", 200, "requested")]
    await gate.idle()
    assert trail(await gate.complete("llama-tpm")) == [("a", 429, "requested"), ("b", 200, "failover")]


async def test_least_inflight_sends_a_request_to_the_deployment_not_busy(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    # Requests for a model whose upstream answers after 300 ms; the first takes a or b, the second the other.
    model = BalancedModel(
        "llama-busy",
        "least_inflight",
        (Deployment("a", "vllm-a", "busy-fake-slow-300"), Deployment("b", "vllm-b", "busy-fake-slow-300")),
    )
    gate = gateway(fakes, http, redis, model)
    first = asyncio.create_task(gate.complete("llama-busy"))
    # The fake serves in its own thread: poll until it holds the first request.
    while not (chats(fakes.a) or chats(fakes.b)):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    second = await gate.complete("llama-busy")
    assert {(await first).attempts[0].deployment, second.attempts[0].deployment} == {"a", "b"}


async def test_the_status_lists_each_deployment_with_state_in_flight_and_latency(
    fakes: Fakes, http: AiohttpClient, redis: Redis
) -> None:
    gate = gateway(fakes, http, redis, two("llama-status", "lowest_latency", b={"weight": 2, "rpm": 100}))
    fakes.a.faults.storm([Fault(error_status=500)])
    for _ in range(3):
        await gate.complete("llama-status")
    await gate.idle()
    found = await status(gate, "llama-status")
    a, b = found["a"], found["b"]
    assert (a.state, a.provider, a.model, a.weight, a.in_flight, a.source) == (
        "ejected",
        "vllm-a",
        UPSTREAM_MODEL,
        1,
        0,
        "operator",
    )
    assert a.HasField("ejected_until") and a.calls == 1 and a.success_rate == 0.0
    assert (b.state, b.weight, b.rpm, b.calls, b.success_rate) == ("healthy", 2, 100, 3, 1.0)
    assert b.latency_ms > 0


async def status(gate: Gateway, model: str) -> dict[str, dispatch_pb2.DeploymentStatus]:
    listed = await gate.servicer.ListModels(dispatch_pb2.ListModelsRequest(account_id=ACCOUNT), None)  # type: ignore[arg-type]
    (info,) = [m for m in listed.models if m.id == model]
    return {d.name: d for d in info.deployments}
