"""How an account wants its tools routed: its routing preferences, as the optimizer uses them.

The preferences live in accounting (`PUT /v1/account/routing/preferences`); each account's
copy is kept in memory and checked against its change counter per request
(orqen_common.account_cache), so a change applies to the next request on every replica.
When accounting cannot answer, the service's defaults apply to that request.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.account_cache import AccountCache, answer_or_none
from orqen_common.changes import ChangeWatch
from orqen_common.routing_modes import ROUTING_MODES

AUTO, SEMANTIC, KEYWORD, PASSTHROUGH = "auto", "semantic", "keyword", "passthrough"
# A plan's mode when its worker was too busy to run the model for it in time (orqen_optimizer.turns).
KEYWORD_BUSY = "keyword_busy"
MODES = ROUTING_MODES


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    # auto: the router picks the keyword fast path, semantic, intent-guided or heuristic
    # routing per request; semantic: always fused scores; keyword: BM25 only (never embeds);
    # passthrough: every tool is forwarded (schemas still compressed).
    mode: str = AUTO
    k_floor: int = 3  # never fewer tools than this (when the request has them)
    k_cap: int = 0  # never more routed tools than this; 0: no cap
    ab_control_share: float = 0.05  # share of routed requests sent unpruned as the A/B control

    @classmethod
    def of(cls, preferences: accounting_pb2.RoutingPreferences, default: RoutingPolicy) -> RoutingPolicy:
        """The policy an account's stored preferences ask for; unknown or unset values take `default`'s."""
        return cls(
            mode=preferences.mode if preferences.mode in MODES else default.mode,
            k_floor=preferences.k_floor if preferences.k_floor > 0 else default.k_floor,
            k_cap=max(preferences.k_cap, 0),
            ab_control_share=min(max(preferences.ab_control_share, 0.0), 1.0),
        )


DEFAULT_POLICY = RoutingPolicy()


class RoutingPolicies:
    def __init__(
        self,
        accounting: accounting_pb2_grpc.AccountingAsyncStub,
        redis: Redis,
        default: RoutingPolicy,
        ttl_seconds: float,
        *,
        rpc_timeout_seconds: float = 2.0,
        watch: ChangeWatch | None = None,
    ) -> None:
        self._accounting = accounting
        self._default = default
        self._timeout = rpc_timeout_seconds
        self._cache = AccountCache(redis, self._load, ttl_seconds, watch=watch)

    async def get(self, account_id: str) -> RoutingPolicy:
        return await self._cache.get(account_id)

    async def _load(self, account_id: str, previous: RoutingPolicy | None) -> tuple[RoutingPolicy, bool]:
        call = self._accounting.GetRoutingPreferences(
            accounting_pb2.AccountRef(account_id=account_id), timeout=self._timeout
        )
        preferences = await answer_or_none(call, account_id, "routing preferences")
        if preferences is None:
            return previous or self._default, False
        return RoutingPolicy.of(preferences, self._default), True
