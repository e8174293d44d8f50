"""Dashboard owners: created by Orqen services only, passwords stored as argon2id hashes."""

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
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


async def _owner(stub: accounting_pb2_grpc.AccountingStub, account_id: str, email: str) -> accounting_pb2.Owner:
    request = accounting_pb2.CreateOwnerRequest(account_id=account_id, email=email, password=PASSWORD)
    return await stub.CreateOwner(request)


async def test_an_invitation_signs_up_one_owner_once_and_only_its_hash_is_stored(
    connect: Connect, repo: AccountingRepository, pool: asyncpg.Pool, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as stub:
        ada = await _owner(stub, account["id"], "ada@example.com")
        invite = await stub.CreateOwnerInvite(
            accounting_pb2.CreateOwnerInviteRequest(account_id=account["id"], invited_by_owner_id=ada.id)
        )
        assert invite.token.startswith("inv-") and invite.expires_at.seconds > 0
        # An email already taken: refused, and the link still works afterwards.
        await orqen_refused(
            stub.AcceptOwnerInvite(
                accounting_pb2.AcceptOwnerInviteRequest(token=invite.token, email="ada@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        grace = await stub.AcceptOwnerInvite(
            accounting_pb2.AcceptOwnerInviteRequest(token=invite.token, email="Grace@Example.com", password=PASSWORD)
        )
        assert (grace.email, grace.account_id) == ("grace@example.com", account["id"])
        await stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="grace@example.com", password=PASSWORD))
        again = await orqen_refused(
            stub.AcceptOwnerInvite(
                accounting_pb2.AcceptOwnerInviteRequest(token=invite.token, email="eve@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        unknown = await orqen_refused(
            stub.AcceptOwnerInvite(
                accounting_pb2.AcceptOwnerInviteRequest(token="inv-nope", email="eve@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert again == unknown
        listed = await stub.ListOwners(accounting_pb2.AccountRef(account_id=account["id"]))
        assert [o.email for o in listed.owners] == ["ada@example.com", "grace@example.com"]
    stored = await pool.fetchrow("SELECT token_hash, invited_by::text, used_by::text FROM owner_invites")
    assert stored["token_hash"] == hashlib.sha256(invite.token.encode()).hexdigest()
    assert (stored["invited_by"], stored["used_by"]) == (ada.id, grace.id)


async def test_an_expired_invitation_signs_up_nobody(
    connect: Connect, repo: AccountingRepository, pool: asyncpg.Pool, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as stub:
        invite = await stub.CreateOwnerInvite(accounting_pb2.CreateOwnerInviteRequest(account_id=account["id"]))
        await pool.execute("UPDATE owner_invites SET expires_at = now() - interval '1 second'")
        await orqen_refused(
            stub.AcceptOwnerInvite(
                accounting_pb2.AcceptOwnerInviteRequest(token=invite.token, email="eve@example.com", password=PASSWORD)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        listed = await stub.ListOwners(accounting_pb2.AccountRef(account_id=account["id"]))
        assert list(listed.owners) == []


async def test_an_invitation_names_an_owner_of_its_own_account(
    connect: Connect, repo: AccountingRepository, orqen_refused: Refused
) -> None:
    acme, other = await repo.ensure_account("acme"), await repo.ensure_account("other")
    async with connect() as stub:
        stranger = await _owner(stub, other["id"], "eve@example.com")
        await orqen_refused(
            stub.CreateOwnerInvite(
                accounting_pb2.CreateOwnerInviteRequest(account_id=acme["id"], invited_by_owner_id=stranger.id)
            ),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_an_owner_is_removed_but_never_the_last_and_never_another_accounts(
    connect: Connect, repo: AccountingRepository, orqen_refused: Refused
) -> None:
    acme, other = await repo.ensure_account("acme"), await repo.ensure_account("other")
    async with connect() as stub:
        ada = await _owner(stub, acme["id"], "ada@example.com")
        grace = await _owner(stub, acme["id"], "grace@example.com")
        eve = await _owner(stub, other["id"], "eve@example.com")
        await orqen_refused(
            stub.RemoveOwner(accounting_pb2.OwnerRef(account_id=acme["id"], owner_id=eve.id)),
            grpc.StatusCode.NOT_FOUND,
        )
        removed = await stub.RemoveOwner(accounting_pb2.OwnerRef(account_id=acme["id"], owner_id=grace.id))
        assert removed.email == "grace@example.com"
        await orqen_refused(
            stub.RemoveOwner(accounting_pb2.OwnerRef(account_id=acme["id"], owner_id=ada.id)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        listed = await stub.ListOwners(accounting_pb2.AccountRef(account_id=acme["id"]))
        assert [o.id for o in listed.owners] == [ada.id]
        assert [o.id for o in (await stub.ListOwners(accounting_pb2.AccountRef(account_id=other["id"]))).owners] == [
            eve.id
        ]


async def test_two_owners_removing_each_other_at_once_leave_one(connect: Connect, repo: AccountingRepository) -> None:
    async with connect() as stub:
        for attempt in range(5):  # a race is a matter of timing: several rounds, each on a fresh account
            account = await repo.ensure_account(f"acme-{attempt}")
            pair = [await _owner(stub, account["id"], f"{who}{attempt}@example.com") for who in ("a", "b")]
            outcomes = await asyncio.gather(
                *(stub.RemoveOwner(accounting_pb2.OwnerRef(account_id=account["id"], owner_id=o.id)) for o in pair),
                return_exceptions=True,
            )
            refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
            assert len(refused) == 1 and refused[0].code() == grpc.StatusCode.FAILED_PRECONDITION, outcomes
            left = await stub.ListOwners(accounting_pb2.AccountRef(account_id=account["id"]))
            assert len(left.owners) == 1


async def test_an_owner_changes_its_password_only_with_the_current_one(
    connect: Connect, repo: AccountingRepository, orqen_refused: Refused
) -> None:
    acme, other = await repo.ensure_account("acme"), await repo.ensure_account("other")
    new_password = "a much longer new passphrase"
    async with connect() as stub:
        ada = await _owner(stub, acme["id"], "ada@example.com")
        await orqen_refused(
            stub.ChangeOwnerPassword(
                accounting_pb2.ChangeOwnerPasswordRequest(
                    account_id=acme["id"], owner_id=ada.id, old_password="wrong password!", new_password=new_password
                )
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await orqen_refused(
            stub.ChangeOwnerPassword(
                accounting_pb2.ChangeOwnerPasswordRequest(
                    account_id=other["id"], owner_id=ada.id, old_password=PASSWORD, new_password=new_password
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        await orqen_refused(
            stub.ChangeOwnerPassword(
                accounting_pb2.ChangeOwnerPasswordRequest(
                    account_id=acme["id"], owner_id=ada.id, old_password=PASSWORD, new_password="short"
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        changed = await stub.ChangeOwnerPassword(
            accounting_pb2.ChangeOwnerPasswordRequest(
                account_id=acme["id"], owner_id=ada.id, old_password=PASSWORD, new_password=new_password
            )
        )
        assert changed.id == ada.id
        await stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="ada@example.com", password=new_password))
        await orqen_refused(
            stub.VerifyOwner(accounting_pb2.VerifyOwnerRequest(email="ada@example.com", password=PASSWORD)),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_api_keys_cannot_manage_the_team(
    connect: Connect, repo: AccountingRepository, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "k", None)
    async with connect(key.plaintext) as stub:
        for call in (
            stub.ListOwners(accounting_pb2.AccountRef(account_id=account["id"])),
            stub.CreateOwnerInvite(accounting_pb2.CreateOwnerInviteRequest(account_id=account["id"])),
            stub.RemoveOwner(accounting_pb2.OwnerRef(account_id=account["id"], owner_id=str(uuid.uuid4()))),
        ):
            await orqen_refused(call, grpc.StatusCode.PERMISSION_DENIED)
