"""The edge's long-lived resources, opened before the listeners and closed after them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from redis.asyncio import Redis

from orqen_common.auth import ApiKeyAuthenticator
from orqen_common.cache import AuthCacheKeys, open_redis
from orqen_common.changes import open_change_watch
from orqen_common.events import EventNames, EventPublisher
from orqen_common.prices import Prices
from orqen_edge.budgets import AccountingLedger, LimitPolicies
from orqen_edge.dashboard.session_store import SessionStore
from orqen_edge.rate_limit import RateLimiter, RateLimits
from orqen_edge.rpc import Downstream
from orqen_edge.settings import EdgeSettings


@dataclass
class Runtime:
    settings: EdgeSettings
    downstream: Downstream
    authenticate: ApiKeyAuthenticator
    publisher: EventPublisher
    redis: Redis
    rate_limiter: RateLimiter
    sessions: SessionStore
    limit_policies: LimitPolicies
    prices: Prices  # what a call costs towards spend budgets, as the ledger prices it

    @classmethod
    async def open(cls, settings: EdgeSettings, stack: AsyncExitStack) -> Runtime:
        prices = Prices.from_settings(settings)  # a bad ORQEN_PRICES_FILE stops the start
        redis = open_redis(stack, settings.redis_url)
        downstream = Downstream(settings)
        stack.push_async_callback(downstream.close)
        publisher = EventPublisher(
            settings.nats_url, EventNames(settings.nats_prefix), "edge", max_buffer=settings.event_buffer
        )
        publisher.start()
        # Closed after the listeners stop, so events of in-flight requests still go out.
        stack.push_async_callback(publisher.close, settings.grace_seconds)
        authenticate = downstream.api_key_authenticator(
            redis,
            settings.auth_cache_ttl_seconds,
            AuthCacheKeys(settings.internal_token.get_secret_value()),
            settings.auth_cache_stale_seconds,
            open_change_watch(stack, redis),
        )
        rate_limiter = RateLimiter(redis, RateLimits.from_settings(settings), ledger=AccountingLedger(downstream))
        sessions = SessionStore(redis, settings.session_idle_seconds, settings.session_max_seconds)
        policies = LimitPolicies(downstream, settings.budget_policy_ttl_seconds)
        return cls(settings, downstream, authenticate, publisher, redis, rate_limiter, sessions, policies, prices)
