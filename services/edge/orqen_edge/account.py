"""Account API: the request log and billing status, scoped to the caller's account."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter

from orqen_common.context import Principal
from orqen_edge.dashboard_auth import key_or_session_principal
from orqen_edge.proto_json import plain
from orqen_edge.runtime import Runtime


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
        "data": [plain(r) for r in page.requests],
        "has_more": bool(page.next_cursor),
        "next_cursor": page.next_cursor or None,
    }


@get("/v1/account/requests/{request_id:str}", summary="One request log entry")
async def get_request(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], request_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_request(principal.account_id, request_id))


@get(
    "/v1/account/billing",
    summary="Subscription tier, usage so far and projected charge (API key or dashboard session)",
    dependencies={"principal": Provide(key_or_session_principal)},
)
async def billing(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return plain(await runtime.downstream.billing(principal.account_id))
