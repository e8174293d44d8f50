"""An account's routing preferences reach the optimizer at once, through real gRPC and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.cache import account_config_key
from orqen_optimizer.policy import RoutingPolicies, RoutingPolicy

ALICE = "00000000-0000-0000-0000-00000000a11c"
DEFAULT = RoutingPolicy(ab_control_share=0.2)


class PreferencesOnly(accounting_pb2_grpc.AccountingServicer):
    """Accounting's GetRoutingPreferences over stored preferences; can be made to fail."""

    def __init__(self) -> None:
        self.stored: dict[str, accounting_pb2.RoutingPreferences] = {}
        self.reads = 0
        self.down = False

    async def GetRoutingPreferences(
        self, request: accounting_pb2.AccountRef, context: grpc.aio.ServicerContext
    ) -> accounting_pb2.RoutingPreferences:
        self.reads += 1
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "accounting is down")
        return self.stored.get(request.account_id) or accounting_pb2.RoutingPreferences(
            account_id=request.account_id, mode="auto", k_floor=3, ab_control_share=0.05
        )


@dataclass
class Setup:
    accounting: PreferencesOnly
    policies: RoutingPolicies
    redis: Redis


@pytest.fixture
async def setup(orqen_redis_db_url: str) -> AsyncIterator[Setup]:
    accounting = PreferencesOnly()
    server = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(accounting, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    redis = Redis.from_url(orqen_redis_db_url)
    policies = RoutingPolicies(accounting_pb2_grpc.AccountingStub(channel), redis, DEFAULT, ttl_seconds=300)
    yield Setup(accounting, policies, redis)
    await redis.aclose()
    await channel.close()
    await server.stop(None)


async def test_preferences_are_read_once_and_a_change_applies_to_the_next_request(setup: Setup) -> None:
    first = await setup.policies.get(ALICE)
    assert first == RoutingPolicy(mode="auto", k_floor=3, k_cap=0, ab_control_share=0.05)
    assert await setup.policies.get(ALICE) == first and setup.accounting.reads == 1
    setup.accounting.stored[ALICE] = accounting_pb2.RoutingPreferences(
        mode="keyword", k_floor=2, k_cap=5, ab_control_share=0.1
    )
    await setup.redis.incr(account_config_key(ALICE))  # what accounting does on every change
    assert await setup.policies.get(ALICE) == RoutingPolicy(mode="keyword", k_floor=2, k_cap=5, ab_control_share=0.1)
    assert setup.accounting.reads == 2


async def test_without_accounting_the_last_known_preferences_or_the_defaults_apply(setup: Setup) -> None:
    known = await setup.policies.get(ALICE)
    setup.accounting.down = True
    await setup.redis.incr(account_config_key(ALICE))
    assert await setup.policies.get(ALICE) == known
    assert await setup.policies.get("00000000-0000-0000-0000-0000000000b0") == DEFAULT


def test_stored_values_out_of_range_take_the_defaults() -> None:
    odd = accounting_pb2.RoutingPreferences(mode="telepathy", k_floor=0, k_cap=-1, ab_control_share=3.0)
    assert RoutingPolicy.of(odd, DEFAULT) == RoutingPolicy(mode="auto", k_floor=3, k_cap=0, ab_control_share=1.0)
