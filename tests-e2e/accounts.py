"""Accounts for end-to-end tests: a fresh account's key, an HTTP client for the account API,
the request log entry of a request once accounting has it, and the secrets the tests made."""

from __future__ import annotations

from typing import Any

import httpx

from harness import request_log_entry
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.grpc_client import open_channel

# Every secret the tests make (API keys, owner passwords, saved provider keys), by what it is: the
# session's secrets scan (tests/conftest.py) looks for each in the stack's logs and database.
SECRETS_MADE: dict[str, str] = {}


def remember_secret(what: str, value: str) -> str:
    """`value`, noted for the secrets scan."""
    SECRETS_MADE[f"{what} #{len(SECRETS_MADE) + 1}"] = value
    return value


async def new_account_key(stack: Any, account: str) -> str:
    """A key of a fresh account, made the way `orqen keys create --account` makes one."""
    env = stack.service_env
    async with open_channel(env["ORQEN_ACCOUNTING_ADDR"], env["ORQEN_INTERNAL_TOKEN"]) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        found = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=account), timeout=10)
        created = await stub.CreateApiKey(
            accounting_pb2.CreateApiKeyRequest(account_id=found.id, name="e2e"), timeout=10
        )
    return remember_secret("API key", created.plaintext)


def http(stack: Any, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=30)


async def logged(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    """The request log entry, once accounting has consumed the request's event."""
    key = client.headers["authorization"].removeprefix("Bearer ")
    return await request_log_entry(str(client.base_url), key, request_id)
