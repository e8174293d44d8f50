"""The orqen.v1.Accounting gRPC service."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_accounting.repository import (
    REQUEST_COLUMNS,
    AccountingRepository,
    InvalidCursorError,
    KeyConflictError,
)
from orqen_common.auth import API_KEY_PREFIX, hash_api_key
from orqen_common.context import Principal, account_scope, require_service
from orqen_common.errors import OrqenError, invalid_request, not_found
from orqen_common.grpc_server import ServicerContext

_MAX_PAGE = 200


class AccountingServicer(accounting_pb2_grpc.AccountingServicer):
    def __init__(self, repo: AccountingRepository) -> None:
        self._repo = repo

    async def Authenticate(
        self, request: accounting_pb2.AuthenticateRequest, context: ServicerContext
    ) -> accounting_pb2.AuthenticateResponse:
        require_service()
        owner = await self._repo.key_owner(request.key_hash)
        if owner is None:
            raise not_found("Unknown or revoked API key.")
        return accounting_pb2.AuthenticateResponse(
            account_id=owner.account_id, api_key_id=owner.api_key_id, account_name=owner.account_name
        )

    async def EnsureAccount(
        self, request: accounting_pb2.EnsureAccountRequest, context: ServicerContext
    ) -> accounting_pb2.Account:
        require_service()
        name = request.name.strip()
        if not name:
            raise invalid_request("Account name is required.")
        row = await self._repo.ensure_account(name)
        return accounting_pb2.Account(id=row["id"], name=row["name"], created_at=_timestamp(row["created_at"]))

    async def CreateApiKey(
        self, request: accounting_pb2.CreateApiKeyRequest, context: ServicerContext
    ) -> accounting_pb2.CreateApiKeyResponse:
        account_id = _uuid(account_scope(request.account_id))
        if request.plaintext and not request.plaintext.startswith(API_KEY_PREFIX):
            raise invalid_request(f"API keys start with {API_KEY_PREFIX!r}.")
        if not await self._repo.account_exists(account_id):
            raise not_found("No such account.")
        try:
            key = await self._repo.create_key(account_id, request.name, request.plaintext or None)
        except KeyConflictError:
            raise OrqenError.of(grpc.StatusCode.ALREADY_EXISTS, "That key belongs to another account.") from None
        return accounting_pb2.CreateApiKeyResponse(
            api_key_id=key.api_key_id, plaintext=key.plaintext, prefix=key.prefix
        )

    async def ListRequests(
        self, request: accounting_pb2.ListRequestsRequest, context: ServicerContext
    ) -> accounting_pb2.ListRequestsResponse:
        account_id = _uuid(account_scope(request.account_id))
        limit = min(request.limit or 50, _MAX_PAGE)
        try:
            rows, next_cursor = await self._repo.list_requests(account_id, limit, request.cursor)
        except InvalidCursorError:
            raise invalid_request("Invalid pagination cursor.") from None
        return accounting_pb2.ListRequestsResponse(requests=[_record(r) for r in rows], next_cursor=next_cursor)

    async def GetRequest(
        self, request: accounting_pb2.GetRequestRequest, context: ServicerContext
    ) -> accounting_pb2.RequestRecord:
        account_id = _uuid(account_scope(request.account_id))
        row = await self._repo.get_request(account_id, request.request_id)
        if row is None:
            raise not_found(f"No request {request.request_id!r} in this account.")
        return _record(row)


async def verify_api_key_locally(repo: AccountingRepository, plaintext: str) -> Principal | None:
    """Accounting checks API keys against its own tables instead of calling itself."""
    if not plaintext.startswith(API_KEY_PREFIX):
        return None
    owner = await repo.key_owner(hash_api_key(plaintext))
    if owner is None:
        return None
    return Principal(
        kind="api_key", account_id=owner.account_id, api_key_id=owner.api_key_id, account_name=owner.account_name
    )


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid_request(f"Invalid account id {value!r}.") from None


def _timestamp(value: Any) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _record(row: asyncpg.Record) -> accounting_pb2.RequestRecord:
    fields: dict[str, Any] = {c: row[c] for c in REQUEST_COLUMNS if c != "created_at"}
    fields["account_id"] = str(fields["account_id"])
    fields["api_key_id"] = str(fields["api_key_id"] or "")
    return accounting_pb2.RequestRecord(**fields, created_at=_timestamp(row["created_at"]))
