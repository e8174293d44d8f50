"""`python -m orqen_dispatch`: run the dispatch service."""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack
from functools import partial

import grpc

from orqen.v1 import accounting_pb2_grpc, dispatch_pb2, dispatch_pb2_grpc
from orqen_common import aio
from orqen_common.auth import open_key_verifier
from orqen_common.cache import open_redis
from orqen_common.changes import open_change_watch
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.prices import Prices
from orqen_common.settings import load_settings
from orqen_dispatch.account_config import AccountConfigs
from orqen_dispatch.available_models import AvailableModels
from orqen_dispatch.balancer import Balancer
from orqen_dispatch.credentials import CredentialStore, KeyRing
from orqen_dispatch.deployments import LoadBalancing
from orqen_dispatch.latency import LatencyStats
from orqen_dispatch.model_list_cache import ModelListCache
from orqen_dispatch.model_routing import ModelChooser
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.base import Provider
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.proxy import GROQ_FAMILIES, OPENAI_FAMILIES, ProxyService
from orqen_dispatch.resilience import Dispatcher
from orqen_dispatch.response_cache import ResponseCache
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer
from orqen_dispatch.settings import DispatchSettings, secret
from orqen_dispatch.upstream_http import AiohttpClient, UpstreamClient, open_client


def providers(settings: DispatchSettings, http: UpstreamClient) -> dict[str, Provider]:
    """Every provider translator, by the prefix that addresses it in a model string."""
    built: dict[str, Provider] = {
        "openai": OpenAICompatible(
            "openai", http, settings.openai_base_url, secret(settings.openai_api_key), OPENAI_FAMILIES
        ),
        "groq": OpenAICompatible("groq", http, settings.groq_base_url, secret(settings.groq_api_key), GROQ_FAMILIES),
        "anthropic": AnthropicMessages(
            "anthropic",
            http,
            settings.anthropic_base_url,
            secret(settings.anthropic_api_key),
            settings.anthropic_default_max_tokens,
        ),
        "bedrock": BedrockConverse(
            "bedrock",
            http,
            settings.bedrock_endpoint_url,
            settings.aws_region,
            secret(settings.aws_access_key_id),
            secret(settings.aws_secret_access_key),
            secret(settings.aws_session_token),
            secret(settings.aws_bearer_token_bedrock),
            control_endpoint_url=settings.bedrock_control_endpoint_url,
        ),
    }
    for name, entry in settings.compatible_providers.items():
        api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        built[name] = OpenAICompatible(name, http, entry.base_url, api_key, entry.families)
    return built


def upstream_client(settings: DispatchSettings) -> AiohttpClient:
    """The one connection pool to every provider, kept warm between requests (call it in the event loop).

    aiohttp over kept-alive HTTP/1.1 connections, no longer httpx with HTTP/2: a call costs
    a quarter of the CPU (upstream_http). Private CAs come from SSL_CERT_FILE / SSL_CERT_DIR.
    """
    return open_client(settings.upstream_connect_timeout_seconds, settings.upstream_timeout_seconds)


def operator_providers(settings: DispatchSettings) -> set[str]:
    """The providers the operator's environment lets every account use (GET /v1/models, orqen/*).

    A provider counts when it has a key, or (OpenAI, Anthropic) a base URL of its own: a
    local OpenAI-compatible server may need no key at all.
    """
    defaults = DispatchSettings.model_fields
    connected = set(settings.compatible_providers)
    if settings.openai_api_key or settings.openai_base_url != defaults["openai_base_url"].default:
        connected.add("openai")
    if settings.anthropic_api_key or settings.anthropic_base_url != defaults["anthropic_base_url"].default:
        connected.add("anthropic")
    if settings.groq_api_key:
        connected.add("groq")
    if settings.aws_bearer_token_bedrock or (settings.aws_access_key_id and settings.aws_secret_access_key):
        connected.add("bedrock")
    return connected


async def build(settings: DispatchSettings, stack: AsyncExitStack) -> ServiceParts:
    """Open the upstream HTTP pool, Redis and the accounting channels; wire the servicer."""
    token = settings.internal_token.get_secret_value()
    http = upstream_client(settings)
    stack.push_async_callback(http.close)
    redis = open_redis(stack, settings.redis_url)
    router = ProviderRouter(
        providers(settings, http), settings.default_provider, lambda name: OpenAICompatible(name, http, "", None)
    )
    prices = Prices.from_settings(settings)  # a bad ORQEN_PRICES_FILE stops the start, before anything opens
    keys = settings.credentials_keys.get_secret_value() if settings.credentials_keys else None
    accounting_channel = open_channel(settings.accounting_addr, token)
    stack.push_async_callback(accounting_channel.close)
    accounting = accounting_pb2_grpc.AccountingStub(accounting_channel)
    store = CredentialStore(
        accounting, KeyRing.from_setting(keys), allow_private_base_urls=settings.allow_private_base_urls
    )
    dispatcher = Dispatcher(settings.retry_policy(), settings.circuit_breakers())
    watch = open_change_watch(stack, redis)
    configs = AccountConfigs(store, accounting, redis, settings.account_config_ttl_seconds, watch=watch)
    lists = ModelListCache(
        redis,
        ttl_seconds=settings.model_list_ttl_seconds,
        retry_seconds=settings.model_list_retry_seconds,
        keep_seconds=settings.model_list_keep_seconds,
        fetch_timeout_seconds=settings.model_list_timeout_seconds,
    )
    latency = LatencyStats(redis)
    stack.push_async_callback(latency.close)  # before Redis closes: the last measurements are written
    balancing = LoadBalancing(Balancer(redis, latency, settings.ejection_policy()), settings.balanced_models())
    servicer = DispatchServicer(
        router,
        ModelChooser(),
        dispatcher,
        configs,
        store,
        latency,
        AvailableModels(router, lists, operator_providers(settings), prices, settings.model_overrides),
        ProxyService(router, dispatcher, configs),
        ResponseCache(redis, settings),
        balancing,
    )

    def register(server: grpc.aio.Server) -> None:
        dispatch_pb2_grpc.add_DispatchServicer_to_server(servicer, server)

    return ServiceParts(
        register=register,
        service_names=[dispatch_pb2.DESCRIPTOR.services_by_name["Dispatch"].full_name],
        verify_api_key=open_key_verifier(stack, redis, settings, watch),
    )


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(DispatchSettings)
    aio.run(run_grpc_service("dispatch", settings, settings.dispatch_addr, partial(build, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
