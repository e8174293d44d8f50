"""Account API: the caller's own API keys and provider credentials.

Every handler acts for the authenticated key's account only; accounting and dispatch
check that scope again on their side.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from msgspec import Meta

from orqen.v1 import accounting_pb2, dispatch_pb2
from orqen_common.caller_text import checked_text
from orqen_common.context import Principal
from orqen_edge.account.budgets import KeyLimits, ModelPatterns, PerMinute, set_key_limits
from orqen_edge.account.responses import listing, plain
from orqen_edge.openapi import API_KEY, AUTHENTICATED, BODY, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

_Secret = Annotated[str, Meta(max_length=2048)] | None


class KeyCreation(msgspec.Struct):
    """A new API key; fields not named here are ignored."""

    name: Annotated[str, Meta(max_length=100, description="A label; 'unnamed' when empty.")] | None = None
    allowed_models: ModelPatterns | None = None
    rpm: Annotated[PerMinute, Meta(description="Requests per minute; 0: the operator's default.")] | None = None
    tpm: Annotated[PerMinute, Meta(description="Tokens per minute; 0: the operator's default.")] | None = None


class ProviderCredential(msgspec.Struct, forbid_unknown_fields=True):
    """A provider credential: the secret fields of its `auth` kind, which dispatch seals."""

    provider: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="openai, anthropic, bedrock, groq, or an OpenAI-compatible provider.",
        ),
    ]
    auth: (
        Annotated[str, Meta(max_length=16, description="api_key, iam or bearer; from the fields given when unset.")]
        | None
    ) = None
    api_key: _Secret = None
    access_key_id: _Secret = None
    secret_access_key: _Secret = None
    session_token: _Secret = None
    bearer_token: _Secret = None
    region: Annotated[str, Meta(max_length=32)] | None = None
    base_url: _Secret = None


class CreatedKey(msgspec.Struct):
    """A new API key; `key` is its secret, shown only here."""

    id: str
    name: str
    prefix: str
    key: str


class DeletedCredential(msgspec.Struct):
    id: str
    deleted: bool


_SECRET_FIELDS = ("api_key", "access_key_id", "secret_access_key", "session_token", "bearer_token")


@get(
    "/v1/account/keys",
    summary="The account's API keys (never their secret)",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def list_keys(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return listing((await runtime.downstream.list_api_keys(principal.account_id)).keys)


@post(
    "/v1/account/keys",
    summary="Create an API key; the plaintext is shown only in this response",
    status_code=201,
    security=API_KEY,
    operation_class=json_body(KeyCreation),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def create_key(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> CreatedKey:
    return await new_key(runtime, principal.account_id, await read_struct(request, KeyCreation))


async def new_key(runtime: Runtime, account_id: str, creation: KeyCreation) -> CreatedKey:
    """Create an API key for the account (the account API and the dashboard both call this)."""
    name = checked_text(creation.name or "unnamed", "name")
    created = await runtime.downstream.create_api_key(account_id, name)
    if creation.allowed_models or creation.rpm or creation.tpm:
        limits = KeyLimits(allowed_models=creation.allowed_models, rpm=creation.rpm, tpm=creation.tpm)
        await set_key_limits(runtime, account_id, created.api_key_id, limits)
    return CreatedKey(id=created.api_key_id, name=name, prefix=created.prefix, key=created.plaintext)


@delete(
    "/v1/account/keys/{key_id:str}",
    summary="Revoke an API key at once",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED, 404),
)
async def revoke_key(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], key_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await runtime.downstream.revoke_api_key(principal.account_id, key_id))


@get(
    "/v1/account/providers",
    summary="Saved provider credentials (last 4 characters only)",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def list_providers(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return listing((await runtime.downstream.list_credentials(principal.account_id)).credentials)


@post(
    "/v1/account/providers",
    summary="Save (or replace) a provider credential",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(ProviderCredential),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def save_provider(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    return plain(await save_credential(runtime, principal.account_id, await read_struct(request, ProviderCredential)))


async def save_credential(runtime: Runtime, account_id: str, body: ProviderCredential) -> accounting_pb2.CredentialInfo:
    """Save (or replace) a provider credential; the secret goes to dispatch, which validates and seals it."""
    for field, value in msgspec.structs.asdict(body).items():
        if value is not None:
            checked_text(value, field)
    secret = {f: value for f in _SECRET_FIELDS if (value := getattr(body, f))}
    saving = dispatch_pb2.SaveCredentialRequest(
        account_id=account_id,
        provider=body.provider,
        auth=body.auth or _auth_of(secret),
        secret=secret,
        base_url=body.base_url or "",
        region=body.region or "",
    )
    return await runtime.downstream.save_credential(saving)


def _auth_of(secret: dict[str, str]) -> str:
    """The kind of credential the fields given describe, when the caller did not say."""
    if "bearer_token" in secret:
        return "bearer"
    if "access_key_id" in secret or "secret_access_key" in secret:
        return "iam"
    return "api_key"


@delete(
    "/v1/account/providers/{credential_id:str}",
    summary="Delete a saved provider credential",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED, 404),
)
async def delete_provider(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], credential_id: FromPath[str]
) -> DeletedCredential:
    deleted = await runtime.downstream.delete_credential(principal.account_id, credential_id)
    return DeletedCredential(id=credential_id, deleted=deleted.deleted)


ROUTES = (list_keys, create_key, revoke_key, list_providers, save_provider, delete_provider)
