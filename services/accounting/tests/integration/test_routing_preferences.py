"""Routing preferences and model toggles over gRPC: defaults, replacement, validation, isolation."""

import math
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import grpc
import pytest

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_accounting.repository import AccountingRepository

Connect = Callable[..., AbstractAsyncContextManager[accounting_pb2_grpc.AccountingStub]]
Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]


def preferences(account_id: str = "", **fields: Any) -> accounting_pb2.RoutingPreferences:
    values: dict[str, Any] = {
        "mode": "semantic",
        "k_floor": 2,
        "k_cap": 8,
        "ab_control_share": 0.1,
        "fallback_models": ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"],
    }
    return accounting_pb2.RoutingPreferences(account_id=account_id, **(values | fields))


def toggles(message: accounting_pb2.ModelToggles) -> list[tuple[str, bool]]:
    return [(t.model, t.enabled) for t in message.toggles]


async def test_an_account_that_saved_nothing_gets_the_defaults(repo: AccountingRepository, connect: Connect) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        got = await service.GetRoutingPreferences(accounting_pb2.AccountRef(account_id=account["id"]))
    assert got == accounting_pb2.RoutingPreferences(
        account_id=account["id"], mode="auto", k_floor=3, k_cap=0, ab_control_share=0.05, fallback_models=[]
    )


async def test_saved_preferences_are_read_back_and_replaced(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "", None)
    async with connect(key.plaintext) as stub:
        saved = await stub.PutRoutingPreferences(preferences())
        assert saved == preferences(account["id"])
        assert await stub.GetRoutingPreferences(accounting_pb2.AccountRef()) == saved
        replaced = await stub.PutRoutingPreferences(
            preferences(mode="passthrough", k_floor=0, k_cap=0, ab_control_share=1.0, fallback_models=[])
        )
        assert await stub.GetRoutingPreferences(accounting_pb2.AccountRef()) == replaced
    assert (replaced.mode, replaced.k_floor, replaced.k_cap, replaced.ab_control_share) == ("passthrough", 0, 0, 1.0)
    assert list(replaced.fallback_models) == []
    assert await pool.fetchval("SELECT count(*) FROM routing_preferences") == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"k_floor": 5, "k_cap": 5},
        {"k_floor": 0, "k_cap": 1, "ab_control_share": 0.0},
        {"fallback_models": [f"openai/model-{i}" for i in range(10)]},
        {"fallback_models": ["m" * 200]},
        {"mode": "keyword"},
        {"mode": "auto"},
    ],
)
async def test_boundary_values_are_accepted(
    repo: AccountingRepository, connect: Connect, fields: dict[str, Any]
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        saved = await service.PutRoutingPreferences(preferences(account["id"], **fields))
    assert saved == preferences(account["id"], **fields)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mode": "fastest"}, "mode"),
        ({"mode": ""}, "mode"),
        ({"k_floor": -1, "k_cap": 0}, "k_floor"),
        ({"k_floor": 3, "k_cap": 2}, "k_cap"),
        ({"k_floor": 0, "k_cap": -1}, "k_cap"),
        ({"ab_control_share": 1.5}, "ab_control_share"),
        ({"ab_control_share": -0.01}, "ab_control_share"),
        ({"ab_control_share": math.nan}, "ab_control_share"),
        ({"fallback_models": [f"openai/model-{i}" for i in range(11)]}, "fallback_models"),
        ({"fallback_models": ["openai/gpt-4o", ""]}, "fallback_models"),
        ({"fallback_models": ["  "]}, "fallback_models"),
        ({"fallback_models": ["m" * 201]}, "fallback_models"),
        ({"fallback_models": ["openai/gpt-4o", "openai/gpt-4o"]}, "fallback_models"),
    ],
)
async def test_invalid_preferences_are_refused_naming_the_field(
    repo: AccountingRepository,
    pool: asyncpg.Pool,
    connect: Connect,
    orqen_refused: Refused,
    fields: dict[str, Any],
    field: str,
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        details = await orqen_refused(
            service.PutRoutingPreferences(preferences(account["id"], **fields)), grpc.StatusCode.INVALID_ARGUMENT
        )
    assert field in details
    assert await pool.fetchval("SELECT count(*) FROM routing_preferences") == 0


async def test_model_toggles_are_set_listed_and_switched_back(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "", None)
    async with connect(key.plaintext) as stub:
        assert toggles(await stub.ListModelToggles(accounting_pb2.AccountRef())) == []
        after_off = await stub.SetModelToggle(
            accounting_pb2.SetModelToggleRequest(model="openai/gpt-4o", enabled=False)
        )
        assert toggles(after_off) == [("openai/gpt-4o", False)]
        await stub.SetModelToggle(accounting_pb2.SetModelToggleRequest(model="anthropic/claude-haiku-4-5"))
        after_on = await stub.SetModelToggle(accounting_pb2.SetModelToggleRequest(model="openai/gpt-4o", enabled=True))
        expected = [("anthropic/claude-haiku-4-5", False), ("openai/gpt-4o", True)]
        assert toggles(after_on) == expected
        assert toggles(await stub.ListModelToggles(accounting_pb2.AccountRef())) == expected
        for model in ("", " ", "m" * 201):
            details = await orqen_refused(
                stub.SetModelToggle(accounting_pb2.SetModelToggleRequest(model=model, enabled=False)),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert "model" in details
    assert await pool.fetchval("SELECT count(*) FROM model_toggles") == 2


async def test_an_account_never_reaches_anothers_preferences_or_toggles(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    alice, bob = await repo.ensure_account("alice"), await repo.ensure_account("bob")
    bob_key = await repo.create_key(bob["id"], "", None)
    async with connect() as service:
        await service.PutRoutingPreferences(preferences(alice["id"], mode="keyword"))
        await service.SetModelToggle(accounting_pb2.SetModelToggleRequest(account_id=alice["id"], model="openai/o3"))
    async with connect(bob_key.plaintext) as stub:
        assert (await stub.GetRoutingPreferences(accounting_pb2.AccountRef())).mode == "auto"
        assert toggles(await stub.ListModelToggles(accounting_pb2.AccountRef())) == []
        for denied in (
            stub.GetRoutingPreferences(accounting_pb2.AccountRef(account_id=alice["id"])),
            stub.PutRoutingPreferences(preferences(alice["id"], mode="passthrough")),
            stub.ListModelToggles(accounting_pb2.AccountRef(account_id=alice["id"])),
            stub.SetModelToggle(
                accounting_pb2.SetModelToggleRequest(account_id=alice["id"], model="openai/o3", enabled=True)
            ),
        ):
            await orqen_refused(denied, grpc.StatusCode.PERMISSION_DENIED)
    async with connect() as service:
        alices = await service.GetRoutingPreferences(accounting_pb2.AccountRef(account_id=alice["id"]))
        alice_toggles = await service.ListModelToggles(accounting_pb2.AccountRef(account_id=alice["id"]))
    assert alices.mode == "keyword"
    assert toggles(alice_toggles) == [("openai/o3", False)]


async def test_unknown_accounts_are_refused(connect: Connect, orqen_refused: Refused) -> None:
    nobody = str(uuid.uuid4())
    async with connect() as service:
        for missing in (
            service.GetRoutingPreferences(accounting_pb2.AccountRef(account_id=nobody)),
            service.PutRoutingPreferences(preferences(nobody)),
            service.ListModelToggles(accounting_pb2.AccountRef(account_id=nobody)),
            service.SetModelToggle(accounting_pb2.SetModelToggleRequest(account_id=nobody, model="openai/gpt-4o")),
        ):
            await orqen_refused(missing, grpc.StatusCode.NOT_FOUND)
        unnamed = service.GetRoutingPreferences(accounting_pb2.AccountRef())
        await orqen_refused(unnamed, grpc.StatusCode.INVALID_ARGUMENT)
