"""The edge's long-lived resources, opened before the listeners and closed after them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from redis.asyncio import Redis

from orqen_common.auth import ApiKeyAuthenticator
from orqen_common.events import EventNames, EventPublisher
from orqen_edge.rpc import Downstream
from orqen_edge.settings import EdgeSettings


@dataclass
class Runtime:
    settings: EdgeSettings
    downstream: Downstream
    authenticate: ApiKeyAuthenticator
    publisher: EventPublisher
    redis: Redis

    @classmethod
    async def open(cls, settings: EdgeSettings, stack: AsyncExitStack) -> Runtime:
        redis = Redis.from_url(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        downstream = Downstream(settings)
        stack.push_async_callback(downstream.close)
        publisher = EventPublisher(
            settings.nats_url, EventNames(settings.nats_prefix), "edge", max_buffer=settings.event_buffer
        )
        publisher.start()
        # Closed after the listeners stop, so events of in-flight requests still go out.
        stack.push_async_callback(publisher.close, settings.grace_seconds)
        authenticate = ApiKeyAuthenticator(redis, downstream.accounting, settings.auth_cache_ttl_seconds)
        return cls(settings, downstream, authenticate, publisher, redis)
