"""Listing and revoking API keys over gRPC: newest first, revocation at once (auth cache too), isolation;
the auth cache believes only entries sealed for the key (a forged or copied one authenticates nothing)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from fakes.serve import free_port
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.servicer import verify_api_key_locally
from orqen_common.auth import ApiKeyAuthenticator, hash_api_key
from orqen_common.cache import AuthCacheKeys
from orqen_common.changes import KEY, open_change_watch
from orqen_common.grpc_client import open_channel

Connect = Callable[..., AbstractAsyncContextManager[accounting_pb2_grpc.AccountingStub]]
Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def cache_key(plaintext: str, internal_token: str) -> str:
    """Where orqen_common.auth caches its verdict on a key."""
    return AuthCacheKeys(internal_token).name(hash_api_key(plaintext))


async def test_keys_are_listed_newest_first_without_secrets(repo: AccountingRepository, connect: Connect) -> None:
    account = await repo.ensure_account("acme")
    first = await repo.create_key(account["id"], "laptop", None)
    second = await repo.create_key(account["id"], "ci", None)
    async with connect(first.plaintext) as stub:
        listed = await stub.ListApiKeys(accounting_pb2.AccountRef())
    assert [(k.id, k.name, k.prefix) for k in listed.keys] == [
        (second.api_key_id, "ci", second.prefix),
        (first.api_key_id, "laptop", first.prefix),
    ]
    assert all(k.HasField("created_at") and not k.HasField("revoked_at") for k in listed.keys)
    # The calling key was just used; the other never was.
    assert listed.keys[1].HasField("last_used_at") and not listed.keys[0].HasField("last_used_at")
    wire = listed.SerializeToString()
    for key in (first, second):
        assert key.plaintext.encode() not in wire and hash_api_key(key.plaintext).encode() not in wire


@pytest.mark.parametrize("watched", [False, True], ids=["redis-per-use", "kept-in-process"])
async def test_revocation_takes_effect_at_once_despite_the_auth_cache(
    repo: AccountingRepository,
    connect: Connect,
    auth_cache: Redis,
    orqen_refused: Refused,
    internal_token: str,
    watched: bool,
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "leaked", None)
    async with connect() as service, AsyncExitStack() as stack:
        # The verifier every other service uses, caching in the same Redis (and in process, with a watch).
        watch = open_change_watch(stack, auth_cache) if watched else None
        revocations: asyncio.Queue[str] = asyncio.Queue()
        if watch is not None:
            watch.listen(lambda kind, subject: revocations.put_nowait(subject) if kind == KEY else None)
            await until(lambda: watch.current() is not None)
        verifier = ApiKeyAuthenticator(auth_cache, service, 3600, AuthCacheKeys(internal_token), watch=watch)
        for _ in range(2):  # with a watch, the second verdict comes from the process
            principal = await verifier(key.plaintext)
            assert principal is not None and principal.api_key_id == key.api_key_id
        assert await auth_cache.exists(cache_key(key.plaintext, internal_token))

        revoked = await service.RevokeApiKey(
            accounting_pb2.ApiKeyRef(account_id=account["id"], api_key_id=key.api_key_id)
        )

        assert (revoked.id, revoked.name, revoked.prefix) == (key.api_key_id, "leaked", key.prefix)
        assert revoked.HasField("revoked_at")
        assert not await auth_cache.exists(cache_key(key.plaintext, internal_token))
        if watch is not None:  # the announcement reaches the watch as Redis delivers it
            while await asyncio.wait_for(revocations.get(), 5) != hash_api_key(key.plaintext):
                pass
        assert await verifier(key.plaintext) is None
        await orqen_refused(
            service.Authenticate(accounting_pb2.AuthenticateRequest(key_hash=hash_api_key(key.plaintext))),
            grpc.StatusCode.NOT_FOUND,
        )
        again = await service.RevokeApiKey(
            accounting_pb2.ApiKeyRef(account_id=account["id"], api_key_id=key.api_key_id)
        )
        assert again.revoked_at == revoked.revoked_at  # idempotent: the first revocation time stands
        listed = await service.ListApiKeys(accounting_pb2.AccountRef(account_id=account["id"]))
        assert [k.revoked_at for k in listed.keys] == [revoked.revoked_at]
    async with connect(key.plaintext) as stub:
        await orqen_refused(stub.ListApiKeys(accounting_pb2.AccountRef()), grpc.StatusCode.UNAUTHENTICATED)


async def test_a_copied_or_forged_auth_cache_entry_authenticates_nothing(
    repo: AccountingRepository, connect: Connect, auth_cache: Redis, internal_token: str
) -> None:
    account = await repo.ensure_account("acme")
    real = await repo.create_key(account["id"], "real", None)
    invented = "sk-orq-invented-by-someone-who-can-write-to-redis"
    keys = AuthCacheKeys(internal_token)
    async with connect() as service:
        verifier = ApiKeyAuthenticator(auth_cache, service, 3600, keys)
        assert await verifier(real.plaintext) is not None  # its verdict is now cached
        [name] = await auth_cache.keys("orqen:auth:*")
        entry = await auth_cache.get(name)
        assert entry is not None and hash_api_key(real.plaintext).encode() not in name
        # The entry copied where a plain SHA-256 of the invented key would name it...
        await auth_cache.set("orqen:auth:" + hash_api_key(invented), entry)
        assert await verifier(invented) is None
        # ...or even under the invented key's true entry name: sealed for another key.
        await auth_cache.set(keys.name(hash_api_key(invented)), entry)
        assert await verifier(invented) is None
        # A value written from scratch carries no valid seal either.
        forged = b"\0" * 32 + entry[32:]
        await auth_cache.set(keys.name(hash_api_key(invented)), forged)
        assert await verifier(invented) is None
        # The real key's own entry, tampered with, is a miss: accounting answers, and the seal is rewritten.
        await auth_cache.set(name, forged)
        principal = await verifier(real.plaintext)
        assert principal is not None and principal.api_key_id == real.api_key_id
        rewritten = await auth_cache.get(name)
        assert rewritten is not None and keys.unseal(hash_api_key(real.plaintext), rewritten) is not None


async def test_a_key_can_revoke_another_key_of_its_account(repo: AccountingRepository, connect: Connect) -> None:
    account = await repo.ensure_account("acme")
    admin = await repo.create_key(account["id"], "admin", None)
    old = await repo.create_key(account["id"], "old", None)
    async with connect(admin.plaintext) as stub:
        revoked = await stub.RevokeApiKey(accounting_pb2.ApiKeyRef(api_key_id=old.api_key_id))
        assert revoked.HasField("revoked_at")
        assert await verify_api_key_locally(repo, old.plaintext) is None
        assert await verify_api_key_locally(repo, admin.plaintext) is not None


async def test_an_account_can_neither_list_nor_revoke_anothers_keys(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    alice, bob = await repo.ensure_account("alice"), await repo.ensure_account("bob")
    alice_key = await repo.create_key(alice["id"], "alice", None)
    bob_key = await repo.create_key(bob["id"], "bob", None)
    async with connect(bob_key.plaintext) as stub:
        listed = await stub.ListApiKeys(accounting_pb2.AccountRef())
        assert [k.id for k in listed.keys] == [bob_key.api_key_id]
        await orqen_refused(
            stub.ListApiKeys(accounting_pb2.AccountRef(account_id=alice["id"])), grpc.StatusCode.PERMISSION_DENIED
        )
        await orqen_refused(
            stub.RevokeApiKey(accounting_pb2.ApiKeyRef(account_id=alice["id"], api_key_id=alice_key.api_key_id)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        # Another account's key id reads exactly like an unknown one.
        other = await orqen_refused(
            stub.RevokeApiKey(accounting_pb2.ApiKeyRef(api_key_id=alice_key.api_key_id)), grpc.StatusCode.NOT_FOUND
        )
        unknown_id = str(uuid.uuid4())
        unknown = await orqen_refused(
            stub.RevokeApiKey(accounting_pb2.ApiKeyRef(api_key_id=unknown_id)), grpc.StatusCode.NOT_FOUND
        )
        assert other.replace(alice_key.api_key_id, "<id>") == unknown.replace(unknown_id, "<id>")
    async with connect() as service:
        await orqen_refused(
            service.RevokeApiKey(accounting_pb2.ApiKeyRef(account_id=bob["id"], api_key_id=alice_key.api_key_id)),
            grpc.StatusCode.NOT_FOUND,
        )
    assert await verify_api_key_locally(repo, alice_key.plaintext) is not None


async def test_bad_ids_and_unknown_accounts_are_refused(connect: Connect, orqen_refused: Refused) -> None:
    async with connect() as service:
        details = await orqen_refused(
            service.RevokeApiKey(accounting_pb2.ApiKeyRef(account_id=str(uuid.uuid4()), api_key_id="key-1")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "api_key_id" in details
        details = await orqen_refused(
            service.ListApiKeys(accounting_pb2.AccountRef(account_id="acme")), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "account_id" in details
        await orqen_refused(
            service.ListApiKeys(accounting_pb2.AccountRef(account_id=str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND
        )


@pytest.mark.parametrize("name", ["e2e\x00key", "line\nbreak", "bell\x07", "c1\x85"])
async def test_key_and_account_names_with_control_characters_are_invalid_arguments(
    connect: Connect, orqen_refused: Refused, name: str
) -> None:
    # A NUL used to reach Postgres, which refuses it in text: the caller got INTERNAL.
    async with connect() as service:
        account = await service.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=f"acct-{uuid.uuid4()}"))
        details = await orqen_refused(
            service.CreateApiKey(accounting_pb2.CreateApiKeyRequest(account_id=account.id, name=name)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "name" in details and "control characters" in details
        await orqen_refused(
            service.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=f"acct{name}")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        listed = await service.ListApiKeys(accounting_pb2.AccountRef(account_id=account.id))
        assert list(listed.keys) == []


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[Redis]:
    """A Redis client whose server is not there (nothing listens on the port)."""
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1, socket_timeout=1)
    yield client
    await client.aclose()


async def test_a_revocation_is_recorded_while_redis_is_down(
    repo: AccountingRepository,
    serve_accounting: Callable[[Redis], Awaitable[str]],
    unreachable_redis: Redis,
    internal_token: str,
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "leaked", None)
    addr = await serve_accounting(unreachable_redis)
    async with open_channel(addr, internal_token) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        with capture_logs() as logs:
            revoked = await stub.RevokeApiKey(
                accounting_pb2.ApiKeyRef(account_id=account["id"], api_key_id=key.api_key_id)
            )
    assert revoked.HasField("revoked_at")
    assert [entry["log_level"] for entry in logs if "auth cache" in entry["event"]] == ["warning"]
    assert await verify_api_key_locally(repo, key.plaintext) is None
