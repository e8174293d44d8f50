"""Dashboard owners: created by Orqen services only, passwords stored as argon2id hashes."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc

from orqen.v1 import accounting_pb2
from orqen_accounting.repository import AccountingRepository

from .conftest import Connect

Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]
PASSWORD = "correct horse battery staple"


async def test_an_owner_logs_in_with_the_password_and_only_the_hash_is_stored(
    connect: Connect, repo: AccountingRepository, pool: asyncpg.Pool, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as stub:
        created = await stub.CreateOwner(
            accounting_pb2.CreateOwnerRequest(account_id=account["id"], email=" Ada@Example.COM ", password=PASSWORD)
        )
        assert (created.email, created.account_id, created.account_name) == ("ada@example.com", account["id"], "acme")
        verified = await stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="ADA@example.com", password=PASSWORD))
        assert verified.id == created.id
        wrong = await orqen_refused(
            stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="ada@example.com", password=PASSWORD + "!")),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        unknown = await orqen_refused(
            stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="nobody@example.com", password=PASSWORD)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert wrong == unknown  # the answer does not tell which emails exist
        await orqen_refused(
            stub.CreateOwner(
                accounting_pb2.CreateOwnerRequest(account_id=account["id"], email="ada@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
    stored = await pool.fetchval("SELECT password_hash FROM owners WHERE email = 'ada@example.com'")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_owner_input_is_checked(connect: Connect, repo: AccountingRepository, orqen_refused: Refused) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as stub:
        for email, password in (("not-an-email", PASSWORD), ("ada@example.com", "short")):
            await orqen_refused(
                stub.CreateOwner(
                    accounting_pb2.CreateOwnerRequest(account_id=account["id"], email=email, password=password)
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        await orqen_refused(
            stub.CreateOwner(
                accounting_pb2.CreateOwnerRequest(
                    account_id="5f0a4b3e-8e6e-4c1e-9a51-2f3f7d7a9c10", email="ada@example.com", password=PASSWORD
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_api_keys_cannot_manage_or_check_owners(
    connect: Connect, repo: AccountingRepository, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "k", None)
    async with connect(key.plaintext) as stub:
        await orqen_refused(
            stub.CreateOwner(
                accounting_pb2.CreateOwnerRequest(account_id=account["id"], email="ada@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await orqen_refused(
            stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="ada@example.com", password=PASSWORD)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
