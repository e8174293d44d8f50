"""Accounting against real Postgres: keys, idempotent ingest, pagination, tenant isolation."""

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, events_pb2
from orqen_accounting.__main__ import MIGRATIONS, SCHEMA, bootstrap_key
from orqen_accounting.owners import OwnerRepository
from orqen_accounting.repository import AccountingRepository, KeyConflictError
from orqen_accounting.servicer import verify_api_key_locally
from orqen_accounting.settings import AccountingSettings
from orqen_common.auth import hash_api_key
from orqen_common.grpc_client import open_channel
from orqen_common.migrations import upgrade_to_head

EventFactory = Callable[..., events_pb2.RequestCompleted]
Record = Callable[[list[events_pb2.RequestCompleted]], Awaitable[int]]


async def test_migrations_are_repeatable(orqen_database_url: str, pool: asyncpg.Pool) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    newest = max((MIGRATIONS / "versions").glob("[0-9]*.py"))
    # A revision id is the file's number, or its number and a name ("0008_budgets").
    declared = re.search(r'^revision = "(.+)"$', newest.read_text(), re.MULTILINE)
    assert declared is not None
    assert await pool.fetchval("SELECT version_num FROM accounting.alembic_version") == declared[1]


async def test_keys_are_stored_as_hashes_and_bootstrap_keys_are_idempotent(
    repo: AccountingRepository, pool: asyncpg.Pool
) -> None:
    account = await repo.ensure_account("acme")
    assert (await repo.ensure_account("acme"))["id"] == account["id"]
    first = await repo.create_key(account["id"], "bootstrap", "sk-orq-bootstrap-secret")
    again = await repo.create_key(account["id"], "bootstrap", "sk-orq-bootstrap-secret")
    assert first.api_key_id == again.api_key_id
    rows = await pool.fetch("SELECT key_hash, prefix FROM api_keys")
    assert [r["key_hash"] for r in rows] == [hash_api_key("sk-orq-bootstrap-secret")]
    assert "secret" not in rows[0]["prefix"]
    other = await repo.ensure_account("other")
    with pytest.raises(KeyConflictError):
        await repo.create_key(other["id"], "steal", "sk-orq-bootstrap-secret")
    owner = await verify_api_key_locally(repo, "sk-orq-bootstrap-secret")
    assert owner is not None and owner.account_id == account["id"]
    assert await verify_api_key_locally(repo, "sk-orq-nope") is None


async def test_the_bootstrap_owner_is_created_once_and_keeps_the_password_it_has(
    repo: AccountingRepository, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners = OwnerRepository(pool)
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "t")
    monkeypatch.setenv("ORQEN_BOOTSTRAP_OWNER_EMAIL", "Owner@Orqen.Local")
    monkeypatch.setenv("ORQEN_BOOTSTRAP_OWNER_PASSWORD", "first generated password")
    await bootstrap_key(repo, owners, AccountingSettings())
    owner = await owners.verify("owner@orqen.local", "first generated password")
    assert owner is not None and owner.account_id == (await repo.ensure_account("default"))["id"]
    # A later start (another password configured, or the owner changed theirs) creates nothing new.
    monkeypatch.setenv("ORQEN_BOOTSTRAP_OWNER_PASSWORD", "another password entirely")
    await bootstrap_key(repo, owners, AccountingSettings())
    assert await owners.verify("owner@orqen.local", "first generated password") is not None
    assert await owners.verify("owner@orqen.local", "another password entirely") is None
    assert await pool.fetchval("SELECT count(*) FROM owners") == 1


async def test_a_redelivered_event_is_stored_once(
    repo: AccountingRepository, pool: asyncpg.Pool, event: EventFactory, record: Record
) -> None:
    account = await repo.ensure_account("acme")
    first = event("req_1", account["id"])
    assert await record([first]) == 1
    assert await record([first, event("req_2", account["id"])]) == 1
    assert await pool.fetchval("SELECT count(*) FROM requests") == 2
    assert await pool.fetchval("SELECT sum(requests) FROM usage_daily") == 2


async def test_request_log_pages_newest_first(repo: AccountingRepository, event: EventFactory, record: Record) -> None:
    account = await repo.ensure_account("acme")
    await record([event(f"req_{i:02d}", account["id"], minute=i) for i in range(7)])
    seen: list[str] = []
    cursor = ""
    while True:
        page, cursor = await repo.list_requests(account["id"], 3, cursor)
        seen.extend(r["request_id"] for r in page)
        if not cursor:
            break
    assert seen == [f"req_{i:02d}" for i in reversed(range(7))]


async def test_one_account_never_sees_anothers_requests(
    repo: AccountingRepository, accounting_addr: str, event: EventFactory, record: Record
) -> None:
    alice, bob = await repo.ensure_account("alice"), await repo.ensure_account("bob")
    await repo.create_key(alice["id"], "", "sk-orq-alice")
    await record([event("req_bob", bob["id"])])
    async with open_channel(accounting_addr, "sk-orq-alice") as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        assert list((await stub.ListRequests(accounting_pb2.ListRequestsRequest())).requests) == []
        for attempt in (
            stub.ListRequests(accounting_pb2.ListRequestsRequest(account_id=bob["id"])),
            stub.GetRequest(accounting_pb2.GetRequestRequest(account_id=bob["id"], request_id="req_bob")),
            stub.CreateApiKey(accounting_pb2.CreateApiKeyRequest(account_id=bob["id"])),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await attempt
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.GetRequest(accounting_pb2.GetRequestRequest(request_id="req_bob"))
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as reserved:
            await stub.Authenticate(accounting_pb2.AuthenticateRequest(key_hash=hash_api_key("sk-orq-alice")))
        assert reserved.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_keys_created_over_grpc_authenticate(accounting_addr: str, internal_token: str) -> None:
    async with open_channel(accounting_addr, internal_token) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        account = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name="team"))
        created = await stub.CreateApiKey(accounting_pb2.CreateApiKeyRequest(account_id=account.id, name="ci"))
        found = await stub.Authenticate(accounting_pb2.AuthenticateRequest(key_hash=hash_api_key(created.plaintext)))
        assert (found.account_id, found.api_key_id) == (account.id, created.api_key_id)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.ListRequests(accounting_pb2.ListRequestsRequest(account_id=str(uuid.uuid4()), cursor="garbage!"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
