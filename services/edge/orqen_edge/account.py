"""Account API: the request log and billing status, scoped to the caller's account."""

from __future__ import annotations

from typing import Annotated, Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from orqen_common.context import Principal
from orqen_edge.runtime import Runtime


def _plain(message: Message) -> dict[str, Any]:
    """A proto message as JSON-ready fields, numbers kept as numbers, times as ISO 8601."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if isinstance(value, Timestamp):
            value = value.ToDatetime().isoformat() + "Z"
        out[field.name] = value
    return out


@get(["/v1/account/requests", "/v1/requests"], summary="Request log (newest first, cursor pagination)")
async def list_requests(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    cursor: FromQuery[str] = "",
) -> dict[str, Any]:
    page = await runtime.downstream.list_requests(principal.account_id, limit, cursor)
    return {
        "object": "list",
        "data": [_plain(r) for r in page.requests],
        "has_more": bool(page.next_cursor),
        "next_cursor": page.next_cursor or None,
    }


@get("/v1/account/requests/{request_id:str}", summary="One request log entry")
async def get_request(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], request_id: FromPath[str]
) -> dict[str, Any]:
    return _plain(await runtime.downstream.get_request(principal.account_id, request_id))


@get("/v1/account/billing", summary="Subscription tier, usage so far and projected charge")
async def billing(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return _plain(await runtime.downstream.billing(principal.account_id))
