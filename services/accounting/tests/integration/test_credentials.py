"""Provider credentials over gRPC: sealed bytes stored as given, one per provider, service-only secrets, isolation."""

import os
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


def sealed(
    account_id: str = "",
    provider: str = "openai",
    *,
    auth: str = "api_key",
    last4: str = "x9Zq",
    base_url: str = "",
    region: str = "",
    key_id: str = "k1",
    nonce: bytes = b"\x01" * 12,
    ciphertext: bytes = b"\x00sealed\xff",
) -> accounting_pb2.SealedCredential:
    """A credential as dispatch sends it: what may be shown, and the secret already sealed."""
    return accounting_pb2.SealedCredential(
        info=accounting_pb2.CredentialInfo(
            account_id=account_id, provider=provider, auth=auth, last4=last4, base_url=base_url, region=region
        ),
        sealed=accounting_pb2.SealedSecret(key_id=key_id, nonce=nonce, ciphertext=ciphertext),
    )


async def test_the_sealed_secret_is_stored_exactly_as_given(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect
) -> None:
    account = await repo.ensure_account("acme")
    nonce, ciphertext = os.urandom(12), b"\x00" + os.urandom(200) + b"\xff"
    async with connect() as service:
        info = await service.PutCredential(sealed(account["id"], nonce=nonce, ciphertext=ciphertext, key_id="2026-01"))
        opened = await service.GetSealedCredentials(accounting_pb2.AccountRef(account_id=account["id"]))
    rows = await pool.fetch("SELECT id::text, account_id::text, key_id, nonce, ciphertext FROM provider_credentials")
    assert [tuple(r) for r in rows] == [(info.id, account["id"], "2026-01", nonce, ciphertext)]
    [credential] = opened.credentials
    assert credential.info == info
    assert (credential.sealed.key_id, credential.sealed.nonce, credential.sealed.ciphertext) == (
        "2026-01",
        nonce,
        ciphertext,
    )


async def test_putting_again_replaces_the_providers_credential(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        first = await service.PutCredential(sealed(account["id"], last4="AAAA", ciphertext=b"\x00sealed-old"))
        assert first.id and first.HasField("created_at") and first.updated_at == first.created_at
        bedrock = await service.PutCredential(
            sealed(account["id"], "bedrock", auth="iam", last4="WXYZ", region="eu-west-1", ciphertext=b"\x00sealed-iam")
        )
        second = await service.PutCredential(
            sealed(
                account["id"],
                last4="BBBB",
                base_url="https://proxy.example/v1",
                key_id="k2",
                ciphertext=b"\x00sealed-new",
            )
        )
        listed = await service.ListCredentials(accounting_pb2.AccountRef(account_id=account["id"]))
    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert second.updated_at.ToDatetime() >= first.updated_at.ToDatetime()
    assert (second.last4, second.base_url) == ("BBBB", "https://proxy.example/v1")
    assert [(c.provider, c.auth, c.last4, c.region) for c in listed.credentials] == [
        ("bedrock", "iam", "WXYZ", "eu-west-1"),
        ("openai", "api_key", "BBBB", ""),
    ]
    assert list(listed.credentials) == [bedrock, second]
    wire = listed.SerializeToString()
    assert b"sealed-iam" not in wire and b"sealed-new" not in wire
    stored = await pool.fetch("SELECT provider, key_id, ciphertext FROM provider_credentials ORDER BY provider")
    assert [tuple(r) for r in stored] == [("bedrock", "k1", b"\x00sealed-iam"), ("openai", "k2", b"\x00sealed-new")]


async def test_deleting_a_credential(repo: AccountingRepository, connect: Connect, orqen_refused: Refused) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "", None)
    async with connect(key.plaintext) as stub:
        saved = await stub.PutCredential(sealed())
        assert saved.account_id == account["id"]
        deleted = await stub.DeleteCredential(accounting_pb2.CredentialRef(credential_id=saved.id))
        assert deleted.deleted
        await orqen_refused(
            stub.DeleteCredential(accounting_pb2.CredentialRef(credential_id=saved.id)), grpc.StatusCode.NOT_FOUND
        )
        assert list((await stub.ListCredentials(accounting_pb2.AccountRef())).credentials) == []


async def test_sealed_secrets_are_for_orqen_services_only(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "", None)
    async with connect(key.plaintext) as stub:
        await stub.PutCredential(sealed())
        for asked in ("", account["id"]):
            await orqen_refused(
                stub.GetSealedCredentials(accounting_pb2.AccountRef(account_id=asked)),
                grpc.StatusCode.PERMISSION_DENIED,
            )


async def test_an_account_never_reaches_anothers_credentials(
    repo: AccountingRepository, pool: asyncpg.Pool, connect: Connect, orqen_refused: Refused
) -> None:
    alice, bob = await repo.ensure_account("alice"), await repo.ensure_account("bob")
    bob_key = await repo.create_key(bob["id"], "", None)
    async with connect() as service:
        alices = await service.PutCredential(sealed(alice["id"], last4="ALCE", ciphertext=b"alice"))
    async with connect(bob_key.plaintext) as stub:
        assert list((await stub.ListCredentials(accounting_pb2.AccountRef())).credentials) == []
        for denied in (
            stub.ListCredentials(accounting_pb2.AccountRef(account_id=alice["id"])),
            stub.DeleteCredential(accounting_pb2.CredentialRef(account_id=alice["id"], credential_id=alices.id)),
            stub.PutCredential(sealed(alice["id"], ciphertext=b"bob's")),
            stub.GetSealedCredentials(accounting_pb2.AccountRef(account_id=alice["id"])),
        ):
            await orqen_refused(denied, grpc.StatusCode.PERMISSION_DENIED)
        await orqen_refused(
            stub.DeleteCredential(accounting_pb2.CredentialRef(credential_id=alices.id)), grpc.StatusCode.NOT_FOUND
        )
        bobs = await stub.PutCredential(sealed(ciphertext=b"bob"))  # the same provider, his own row
    async with connect() as service:
        await orqen_refused(
            service.DeleteCredential(accounting_pb2.CredentialRef(account_id=bob["id"], credential_id=alices.id)),
            grpc.StatusCode.NOT_FOUND,
        )
        opened = await service.GetSealedCredentials(accounting_pb2.AccountRef(account_id=alice["id"]))
    assert [(c.info.id, c.sealed.ciphertext) for c in opened.credentials] == [(alices.id, b"alice")]
    assert bobs.id != alices.id and bobs.account_id == bob["id"]
    assert await pool.fetchval("SELECT count(*) FROM provider_credentials") == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provider": "OpenAI"}, "info.provider"),
        ({"provider": ""}, "info.provider"),
        ({"provider": "open ai"}, "info.provider"),
        ({"provider": "9router"}, "info.provider"),
        ({"provider": "p" * 65}, "info.provider"),
        ({"auth": "password"}, "info.auth"),
        ({"auth": ""}, "info.auth"),
        ({"last4": "12345"}, "info.last4"),
        ({"base_url": "https://x.example/" + "v" * 2048}, "info.base_url"),
        ({"key_id": ""}, "sealed.key_id"),
        ({"nonce": b""}, "sealed.nonce"),
        ({"ciphertext": b""}, "sealed.ciphertext"),
        ({"ciphertext": b"x" * 16385}, "sealed.ciphertext"),
    ],
)
async def test_invalid_credentials_are_refused_naming_the_field(
    repo: AccountingRepository,
    pool: asyncpg.Pool,
    connect: Connect,
    orqen_refused: Refused,
    changes: dict[str, Any],
    field: str,
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        details = await orqen_refused(
            service.PutCredential(sealed(account["id"], **changes)), grpc.StatusCode.INVALID_ARGUMENT
        )
    assert field in details
    assert await pool.fetchval("SELECT count(*) FROM provider_credentials") == 0


async def test_provider_names_of_compatible_providers_are_accepted(
    repo: AccountingRepository, connect: Connect
) -> None:
    account = await repo.ensure_account("acme")
    async with connect() as service:
        for provider in ("groq", "my-vllm_2", "p" * 64):
            saved = await service.PutCredential(sealed(account["id"], provider, last4=""))
            assert saved.provider == provider


async def test_bad_ids_and_unknown_accounts_are_refused(connect: Connect, orqen_refused: Refused) -> None:
    nobody = str(uuid.uuid4())
    async with connect() as service:
        for missing in (
            service.PutCredential(sealed(nobody)),
            service.ListCredentials(accounting_pb2.AccountRef(account_id=nobody)),
            service.GetSealedCredentials(accounting_pb2.AccountRef(account_id=nobody)),
        ):
            await orqen_refused(missing, grpc.StatusCode.NOT_FOUND)
        details = await orqen_refused(
            service.DeleteCredential(accounting_pb2.CredentialRef(account_id=nobody, credential_id="openai")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "credential_id" in details
        details = await orqen_refused(
            service.GetSealedCredentials(accounting_pb2.AccountRef(account_id="acme")), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "account_id" in details
