"""Whether and how one dispatched request uses the response cache (orqen_dispatch.response_cache)."""

from __future__ import annotations

from dataclasses import dataclass

from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.errors import invalid_request
from orqen_common.formats.openai import ChatRequest
from orqen_common.response_cache import CACHE_MODES, MAX_CACHE_TTL_SECONDS, CacheMode
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.cached_answer import CachedAnswer
from orqen_dispatch.resilience import Target
from orqen_dispatch.response_cache import CacheKey, cache_key


@dataclass(frozen=True, slots=True)
class CacheUse:
    """A request that consults the cache ("use") or only refills it ("refresh")."""

    mode: CacheMode
    key: CacheKey
    ttl_seconds: int


def cache_use(
    request: dispatch_pb2.CompleteRequest, account_id: str, config: AccountConfig, chat: ChatRequest, first: Target
) -> CacheUse | None:
    """How the request uses the cache; None when it does not ("skip", or the account's default is off).

    The request's own mode and TTL (x-orqen-cache, x-orqen-cache-ttl) win over the account's
    settings. The key names the first model the request would be sent to.
    """
    if request.cache and request.cache not in CACHE_MODES:
        raise invalid_request(f"Invalid cache mode {request.cache!r}: use one of {', '.join(CACHE_MODES)}.")
    if not 0 <= request.cache_ttl_seconds <= MAX_CACHE_TTL_SECONDS:
        raise invalid_request(f"Invalid cache TTL: between 1 and {MAX_CACHE_TTL_SECONDS} seconds.")
    mode: CacheMode = request.cache or ("use" if config.cache_enabled else "skip")
    if mode == "skip":
        return None
    model = f"{first.provider.name}:{first.name or first.model}"
    ttl = request.cache_ttl_seconds or config.cache_ttl_seconds
    return CacheUse(mode, cache_key(account_id, model, chat), ttl)


def hit_summary(answer: CachedAnswer) -> dispatch_pb2.DispatchSummary:
    """The summary of a request answered from the cache: nothing called, the replayed answer's usage kept apart."""
    usage = answer.token_usage()
    return dispatch_pb2.DispatchSummary(
        provider=answer.provider,
        model=answer.model,
        upstream_status=200,
        route_reason="cache",
        cache="hit",
        cached_usage=common_pb2.Usage(
            input_tokens=usage.prompt,
            output_tokens=usage.output,
            cached_input_tokens=usage.cache_read,
            cache_write_input_tokens=usage.cache_write,
        ),
    )
