"""`python -m orqen_dispatch`: run the dispatch service."""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import AsyncExitStack
from functools import partial

import grpc
import httpx

from orqen.v1 import dispatch_pb2, dispatch_pb2_grpc
from orqen_common.auth import open_key_verifier
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.base import Provider
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer
from orqen_dispatch.settings import DispatchSettings, secret


def providers(settings: DispatchSettings, http: httpx.AsyncClient) -> dict[str, Provider]:
    """Every provider translator, by the prefix that addresses it in a model string."""
    built: dict[str, Provider] = {
        "openai": OpenAICompatible("openai", http, settings.openai_base_url, secret(settings.openai_api_key)),
        "groq": OpenAICompatible("groq", http, settings.groq_base_url, secret(settings.groq_api_key)),
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
        ),
    }
    for name, entry in settings.compatible_providers.items():
        api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        built[name] = OpenAICompatible(name, http, entry.base_url, api_key)
    return built


async def build(settings: DispatchSettings, stack: AsyncExitStack) -> ServiceParts:
    """Open the upstream HTTP pool and the accounting channel; wire the servicer."""
    token = settings.internal_token.get_secret_value()
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=120),
    )
    stack.push_async_callback(http.aclose)
    router = ProviderRouter(providers(settings, http), settings.default_provider)

    def register(server: grpc.aio.Server) -> None:
        dispatch_pb2_grpc.add_DispatchServicer_to_server(DispatchServicer(router), server)

    return ServiceParts(
        register=register,
        service_names=[dispatch_pb2.DESCRIPTOR.services_by_name["Dispatch"].full_name],
        verify_api_key=open_key_verifier(
            stack, settings.redis_url, settings.accounting_addr, token, settings.auth_cache_ttl_seconds
        ),
    )


def main(argv: list[str] | None = None) -> int:
    settings = DispatchSettings()
    asyncio.run(run_grpc_service("dispatch", settings, settings.dispatch_addr, partial(build, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
