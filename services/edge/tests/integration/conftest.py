"""The edge's runtime on real Redis and NATS, with every gRPC service at an address nothing listens on."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from fakes.serve import free_port
from orqen_common.auth import hash_api_key
from orqen_common.cache import AuthCacheKeys
from orqen_edge.runtime import Runtime
from orqen_edge.settings import EdgeSettings

from .edge_app import start_edge, stripe_fake  # noqa: F401  (fixtures shared by the dashboard-session tests)

OpenRuntime = Callable[..., Awaitable[Runtime]]
TOKEN = "t"


@pytest.fixture
async def open_runtime(
    orqen_redis_db_url: str, orqen_nats_url: str, orqen_nats_prefix: str
) -> AsyncIterator[OpenRuntime]:
    """`await open_runtime(api_key, **settings)`: the runtime, with `api_key` already in the auth cache
    (as after an earlier request, so it resolves while accounting is down) for account "acct", key "key"."""
    stack = AsyncExitStack()

    async def open_with(api_key: str, **settings: Any) -> Runtime:
        redis = Redis.from_url(orqen_redis_db_url)
        key_hash, keys = hash_api_key(api_key), AuthCacheKeys(TOKEN)
        entry = keys.seal(key_hash, orjson.dumps({"a": "acct", "k": "key", "n": "test"}))
        await redis.set(keys.name(key_hash), entry)
        await redis.aclose()
        nowhere = {
            f"{name}_addr": f"127.0.0.1:{free_port()}" for name in ("optimizer", "dispatch", "accounting", "billing")
        }
        edge_settings = EdgeSettings(
            internal_token=SecretStr(TOKEN),
            redis_url=orqen_redis_db_url,
            nats_prefix=orqen_nats_prefix,
            grace_seconds=1,
            **{"nats_url": orqen_nats_url, **nowhere, **settings},
        )
        runtime = await Runtime.open(edge_settings, stack)
        # Connected to NATS, as a runtime that has served before is: /readyz asks NATS itself.
        for _ in range(100):
            if runtime.publisher.connected:
                break
            await asyncio.sleep(0.05)
        return runtime

    try:
        yield open_with
    finally:
        # Closing channels to addresses nothing listens on can stall inside grpc.aio;
        # bound it so one stall cannot hang the suite (see the closing note of issue 2).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stack.aclose(), 10)
