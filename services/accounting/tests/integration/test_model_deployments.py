"""Load-balanced models over gRPC: saved, read back, replaced, deleted, checked, kept to their account."""

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import grpc
import pytest
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_accounting.repository import AccountingRepository
from orqen_common.cache import account_config_key

Connect = Callable[..., AbstractAsyncContextManager[accounting_pb2_grpc.AccountingStub]]
Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]


def deployment(name: str, provider: str = "vllm-a", **fields: Any) -> accounting_pb2.ModelDeployment:
    return accounting_pb2.ModelDeployment(name=name, provider=provider, **fields)


def balanced(model: str = "llama-70b", account_id: str = "", **fields: Any) -> accounting_pb2.ModelDeployments:
    values: dict[str, Any] = {
        "strategy": "least_inflight",
        "deployments": [
            deployment("a", model="meta-llama/Llama-3.3-70B-Instruct", weight=3, rpm=600),
            deployment("east", "bedrock", region="us-east-1", weight=1, tpm=200000),
        ],
    }
    return accounting_pb2.ModelDeployments(account_id=account_id, model=model, **(values | fields))


async def test_deployments_are_saved_read_back_replaced_and_deleted(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "", None)
    async with connect(key.plaintext) as stub:
        assert list((await stub.ListModelDeployments(accounting_pb2.AccountRef())).models) == []
        saved = await stub.PutModelDeployments(balanced())
        assert saved == balanced(account_id=account["id"])
        # Unset strategy and weight read as their defaults.
        other = await stub.PutModelDeployments(
            accounting_pb2.ModelDeployments(model="gpt-4o", deployments=[deployment("only", "openai")])
        )
        assert (other.strategy, other.deployments[0].weight) == ("weighted", 1)
        listed = await stub.ListModelDeployments(accounting_pb2.AccountRef())
        assert list(listed.models) == [other, saved]  # by model
        replaced = await stub.PutModelDeployments(balanced(strategy="lowest_latency", deployments=[deployment("b")]))
        listed = await stub.ListModelDeployments(accounting_pb2.AccountRef())
        assert list(listed.models) == [other, replaced]
        deleted = await stub.DeleteModelDeployments(accounting_pb2.ModelDeploymentsRef(model="llama-70b"))
        assert deleted.deleted
        await orqen_refused(
            stub.DeleteModelDeployments(accounting_pb2.ModelDeploymentsRef(model="llama-70b")),
            grpc.StatusCode.NOT_FOUND,
        )
    assert await pool.fetchval("SELECT count(*) FROM model_deployments") == 1


async def test_every_change_tells_dispatch_replicas_to_read_the_account_again(
    repo: AccountingRepository, connect: Connect, auth_cache: Redis
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        await service.PutModelDeployments(balanced(account_id=account["id"]))
        assert int(await auth_cache.get(account_config_key(account["id"])) or 0) == 1
        await service.DeleteModelDeployments(
            accounting_pb2.ModelDeploymentsRef(account_id=account["id"], model="llama-70b")
        )
    assert int(await auth_cache.get(account_config_key(account["id"])) or 0) == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": "orqen/auto"}, "model"),
        ({"strategy": "round_robin"}, "strategy"),
        ({"deployments": []}, "deployments"),
        ({"deployments": [deployment(f"d{i}") for i in range(17)]}, "deployments"),
        ({"deployments": [deployment("a"), deployment("a")]}, "same name"),
        ({"deployments": [deployment("")]}, "deployments[0].name"),
        ({"deployments": [deployment("a b")]}, "deployments[0].name"),
        ({"deployments": [deployment("a", "Not A Provider")]}, "deployments[0].provider"),
        ({"deployments": [deployment("a", "openai", region="us-east-1")]}, "deployments[0].region"),
        ({"deployments": [deployment("a", "bedrock", region="moon")]}, "deployments[0].region"),
        ({"deployments": [deployment("a", weight=1001)]}, "deployments[0].weight"),
        ({"deployments": [deployment("a", weight=-1)]}, "deployments[0].weight"),
        ({"deployments": [deployment("a", rpm=-5)]}, "deployments[0].rpm"),
        ({"deployments": [deployment("a", model="m" * 201)]}, "deployments[0].model"),
    ],
)
async def test_invalid_deployments_are_refused_naming_the_field(
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
            service.PutModelDeployments(balanced(account_id=account["id"], **fields)), grpc.StatusCode.INVALID_ARGUMENT
        )
    assert field in details
    assert await pool.fetchval("SELECT count(*) FROM model_deployments") == 0


async def test_an_account_never_reaches_anothers_deployments(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    alice, bob = await repo.ensure_account("alice"), await repo.ensure_account("bob")
    bob_key = await repo.create_key(bob["id"], "", None)
    async with connect() as service:
        await service.PutModelDeployments(balanced(account_id=alice["id"]))
    async with connect(bob_key.plaintext) as stub:
        assert list((await stub.ListModelDeployments(accounting_pb2.AccountRef())).models) == []
        for denied in (
            stub.ListModelDeployments(accounting_pb2.AccountRef(account_id=alice["id"])),
            stub.PutModelDeployments(balanced(account_id=alice["id"])),
            stub.DeleteModelDeployments(accounting_pb2.ModelDeploymentsRef(account_id=alice["id"], model="llama-70b")),
        ):
            await orqen_refused(denied, grpc.StatusCode.PERMISSION_DENIED)
        # Bob's model of the same name is his own.
        await orqen_refused(
            stub.DeleteModelDeployments(accounting_pb2.ModelDeploymentsRef(model="llama-70b")),
            grpc.StatusCode.NOT_FOUND,
        )
    async with connect() as service:
        alices = await service.ListModelDeployments(accounting_pb2.AccountRef(account_id=alice["id"]))
    assert [m.model for m in alices.models] == ["llama-70b"]


async def test_unknown_accounts_are_refused(connect: Connect, orqen_refused: Refused) -> None:
    nobody = str(uuid.uuid4())
    async with connect() as service:
        await orqen_refused(
            service.ListModelDeployments(accounting_pb2.AccountRef(account_id=nobody)), grpc.StatusCode.NOT_FOUND
        )
        await orqen_refused(service.PutModelDeployments(balanced(account_id=nobody)), grpc.StatusCode.NOT_FOUND)
