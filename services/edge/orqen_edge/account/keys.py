"""Account API: the caller's own API keys and provider credentials.

Every handler acts for the authenticated key's account only; accounting and dispatch
check that scope again on their side.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from orqen.v1 import dispatch_pb2
from orqen_common.context import Principal
from orqen_common.errors import invalid_request
from orqen_edge.account.responses import listing, plain
from orqen_edge.caller_text import checked_text
from orqen_edge.request_body import read_json_object
from orqen_edge.runtime import Runtime

_NAME_LIMIT = 100


def _optional_str(body: dict[str, Any], field: str, limit: int = 2048) -> str:
    value = body.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise invalid_request(f"'{field}' must be a string of at most {limit} characters.")
    return checked_text(value, field)


@get("/v1/account/keys", summary="The account's API keys (never their secret)")
async def list_keys(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return listing((await runtime.downstream.list_api_keys(principal.account_id)).keys)


@post("/v1/account/keys", summary="Create an API key; the plaintext is shown only in this response", status_code=201)
async def create_key(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    body = await read_json_object(request)
    name = _optional_str(body, "name", _NAME_LIMIT) or "unnamed"
    created = await runtime.downstream.create_api_key(principal.account_id, name)
    return {"id": created.api_key_id, "name": name, "prefix": created.prefix, "key": created.plaintext}


@delete("/v1/account/keys/{key_id:str}", summary="Revoke an API key at once", status_code=200)
async def revoke_key(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], key_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await runtime.downstream.revoke_api_key(principal.account_id, key_id))


@get("/v1/account/providers", summary="Saved provider credentials (last 4 characters only)")
async def list_providers(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return listing((await runtime.downstream.list_credentials(principal.account_id)).credentials)


@post("/v1/account/providers", summary="Save (or replace) a provider credential", status_code=200)
async def save_provider(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    """Body: {"provider", "auth"?, "api_key" | "access_key_id"+"secret_access_key"(+"session_token") |
    "bearer_token", "region"?, "base_url"?}. The secret goes to dispatch, which seals it."""
    body = await read_json_object(request)
    provider = _optional_str(body, "provider", 64)
    if not provider:
        raise invalid_request("'provider' is required (openai, anthropic, bedrock, groq, or a compatible provider).")
    secret_fields = ("api_key", "access_key_id", "secret_access_key", "session_token", "bearer_token")
    secret = {f: _optional_str(body, f) for f in secret_fields if body.get(f)}
    unknown = sorted(set(body) - {"provider", "auth", "region", "base_url", *secret_fields})
    if unknown:
        raise invalid_request(f"Unknown fields: {', '.join(unknown)}.")
    auth = _optional_str(body, "auth", 16) or _auth_of(secret)
    saving = dispatch_pb2.SaveCredentialRequest(
        account_id=principal.account_id,
        provider=provider,
        auth=auth,
        secret=secret,
        base_url=_optional_str(body, "base_url"),
        region=_optional_str(body, "region", 32),
    )
    return plain(await runtime.downstream.save_credential(saving))


def _auth_of(secret: dict[str, str]) -> str:
    """The kind of credential the fields given describe, when the caller did not say."""
    if "bearer_token" in secret:
        return "bearer"
    if "access_key_id" in secret or "secret_access_key" in secret:
        return "iam"
    return "api_key"


@delete("/v1/account/providers/{credential_id:str}", summary="Delete a saved provider credential", status_code=200)
async def delete_provider(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], credential_id: FromPath[str]
) -> dict[str, Any]:
    deleted = await runtime.downstream.delete_credential(principal.account_id, credential_id)
    return {"id": credential_id, "deleted": deleted.deleted}


ROUTES = (list_keys, create_key, revoke_key, list_providers, save_provider, delete_provider)
