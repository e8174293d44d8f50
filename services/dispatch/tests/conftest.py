"""Dispatch's servicer built in-process over given providers, without accounting (Redis only for a given cache)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import orjson
import pytest
from redis.asyncio import Redis

from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.context import Principal, principal_var
from orqen_common.prices import Prices
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.available_models import AvailableModels
from orqen_dispatch.balancer import Balancer, EjectionPolicy
from orqen_dispatch.deployments import LoadBalancing
from orqen_dispatch.latency import ModelStats
from orqen_dispatch.model_list_cache import ListSource, ProviderList
from orqen_dispatch.model_routing import ModelChooser
from orqen_dispatch.proxy import ProxyService
from orqen_dispatch.resilience import CircuitBreakers, Dispatcher, RetryPolicy
from orqen_dispatch.response_cache import ResponseCache, ResponseCacheSettings
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer

# (router, every account's configuration, the providers the operator connects[, response cache]) -> the servicer
ServicerFactory = Callable[..., DispatchServicer]


class StaticConfigs:
    """AccountConfigs' interface: the same configuration for every account."""

    def __init__(self, config: AccountConfig) -> None:
        self.config = config

    async def get(self, account_id: str) -> AccountConfig:
        return self.config


class NoLatency:
    """LatencyStats' interface, with nothing measured and nothing kept."""

    async def snapshot(self, models: Iterable[str]) -> dict[str, ModelStats]:
        return {}

    def record(self, model: str, duration_ms: float, ok: bool) -> None:
        return None


class UncachedLists:
    """ModelListCache's interface without Redis: every list read from its provider each time."""

    async def lists(self, sources: Sequence[ListSource]) -> list[ProviderList]:
        lists = []
        for source in sources:
            models = await source.provider.list_models(source.credentials)
            lists.append(ProviderList(source.provider.name, tuple(models), 1.0, 0.0, "fresh"))
        return lists


@pytest.fixture
def dispatch_servicer() -> ServicerFactory:
    """Builds a servicer that calls each model once (no retries), then the account's fallbacks."""
    principal_var.set(Principal("service"))

    def build(
        router: ProviderRouter,
        config: AccountConfig,
        operator_providers: Collection[str],
        cache: ResponseCache | None = None,
    ) -> DispatchServicer:
        dispatcher = Dispatcher(RetryPolicy(max_attempts=1), CircuitBreakers(threshold=100))
        configs = StaticConfigs(config)
        return DispatchServicer(
            router,
            ModelChooser(),
            dispatcher,
            configs,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]  # the credential store only saves; no test here saves
            NoLatency(),  # type: ignore[arg-type]
            AvailableModels(router, UncachedLists(), operator_providers, Prices(), {}),  # type: ignore[arg-type]
            ProxyService(router, dispatcher, configs),  # type: ignore[arg-type]
            # Without a test's own cache: a Redis no request reaches (the cache is off by default).
            cache or ResponseCache(Redis(host="127.0.0.1", port=1), ResponseCacheSettings()),
            # No test here balances a model: the balancer's Redis is never called.
            LoadBalancing(Balancer(Redis(), NoLatency(), EjectionPolicy()), {}),  # type: ignore[arg-type]
        )

    return build


def _chat_request(model: str, **credentials: str) -> dispatch_pb2.CompleteRequest:
    chat = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return dispatch_pb2.CompleteRequest(
        context=common_pb2.RequestContext(
            request_id="req_test", account_id="00000000-0000-0000-0000-00000000c0de", ingress="openai"
        ),
        chat_json=orjson.dumps(chat),
        credentials=credentials,
    )


@pytest.fixture
def chat_request() -> Callable[..., dispatch_pb2.CompleteRequest]:
    """`chat_request(model, **credentials)`: a one-message chat with the caller's own credentials."""
    return _chat_request
