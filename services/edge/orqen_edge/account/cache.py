"""The response cache of an account: /v1/account/cache (settings, what it holds, purge).

The settings live in accounting (dispatch reads them with the account's configuration); the
entries live in Redis, kept by dispatch, which answers what the account holds and empties it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, put
from litestar.di import NamedDependency
from msgspec import UNSET, Meta, UnsetType

from orqen.v1 import accounting_pb2, dispatch_pb2
from orqen_common.context import Principal
from orqen_common.response_cache import MAX_CACHE_TTL_SECONDS
from orqen_edge.openapi import API_KEY, AUTHENTICATED, BODY, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime


class CacheSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Response cache settings to change; fields not sent are kept."""

    enabled: (
        Annotated[bool, Meta(description="Requests without an x-orqen-cache header use the cache.")] | UnsetType
    ) = UNSET
    ttl_seconds: (
        Annotated[
            int,
            Meta(ge=1, le=MAX_CACHE_TTL_SECONDS, description="How long an answer is kept without x-orqen-cache-ttl."),
        ]
        | UnsetType
    ) = UNSET


def cache_json(settings: accounting_pb2.CacheSettings, held: dispatch_pb2.ResponseCacheUsage) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "ttl_seconds": settings.ttl_seconds,
        "entries": held.entries,
        "bytes": held.bytes,
    }


@get(
    "/v1/account/cache",
    summary="Response cache settings, and how many answers and bytes it holds",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def get_cache(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return await cache_state(runtime, principal.account_id)


async def cache_state(runtime: Runtime, account_id: str) -> dict[str, Any]:
    """The account's cache settings and what the cache holds (the account API and the dashboard)."""
    settings, held = await asyncio.gather(
        runtime.downstream.get_cache_settings(account_id), runtime.downstream.get_response_cache_usage(account_id)
    )
    return cache_json(settings, held)


@put(
    "/v1/account/cache",
    summary="Update response cache settings (fields not sent are kept)",
    security=API_KEY,
    operation_class=json_body(CacheSettingsUpdate),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def put_cache(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    return await update_cache(runtime, principal.account_id, await read_struct(request, CacheSettingsUpdate))


async def update_cache(runtime: Runtime, account_id: str, body: CacheSettingsUpdate) -> dict[str, Any]:
    """Change the settings `body` sends, keep the others (the account API and the dashboard); the new state."""
    current = await runtime.downstream.get_cache_settings(account_id)
    updated = accounting_pb2.CacheSettings(
        account_id=account_id,
        enabled=current.enabled if body.enabled is UNSET else body.enabled,
        ttl_seconds=current.ttl_seconds if body.ttl_seconds is UNSET else body.ttl_seconds,
    )
    settings, held = await asyncio.gather(
        runtime.downstream.put_cache_settings(updated), runtime.downstream.get_response_cache_usage(account_id)
    )
    return cache_json(settings, held)


@delete(
    "/v1/account/cache",
    summary="Purge the account's response cache: every cached answer is deleted",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def purge_cache(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    purged = await runtime.downstream.purge_response_cache(principal.account_id)
    return {"purged_entries": purged.entries, "purged_bytes": purged.bytes}


ROUTES = (get_cache, put_cache, purge_cache)
