"""Account API: the request log, scoped to the caller's account (an API key or the dashboard session)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from google.protobuf.timestamp_pb2 import Timestamp
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from orqen.v1 import accounting_pb2
from orqen_common.context import Principal
from orqen_edge.account.responses import PageLimit, page, plain
from orqen_edge.dashboard.auth import KEY_OR_SESSION
from orqen_edge.runtime import Runtime


async def page_of_requests(runtime: Runtime, listing: accounting_pb2.ListRequestsRequest) -> dict[str, Any]:
    """One page of the request log in the list shape every paginated route answers with."""
    found = await runtime.downstream.list_requests(listing)
    return page(found.requests, found.next_cursor)


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    # A time without an offset is UTC, as every time the API returns is.
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


@get(
    ["/v1/account/requests", "/v1/requests"],
    summary="Request log (newest first, cursor pagination, filters)",
    dependencies=KEY_OR_SESSION,
)
async def list_requests(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    limit: PageLimit = 50,
    cursor: FromQuery[str] = "",
    model: Annotated[str, QueryParameter(description="The model requested or used.")] = "",
    status: Annotated[
        str,
        QueryParameter(
            description="'success', 'error' or an HTTP status code.", pattern=r"^(success|error|[1-5]\d\d)?$"
        ),
    ] = "",
    session_id: FromQuery[str] = "",
    since: Annotated[dt.datetime | None, QueryParameter(description="ISO 8601; requests at or after.")] = None,
    until: Annotated[dt.datetime | None, QueryParameter(description="ISO 8601; requests before.")] = None,
) -> dict[str, Any]:
    listing = accounting_pb2.ListRequestsRequest(
        account_id=principal.account_id,
        limit=limit,
        cursor=cursor,
        model=model,
        status=status,
        session_id=session_id,
        since=_timestamp(since),
        until=_timestamp(until),
    )
    return await page_of_requests(runtime, listing)


@get("/v1/account/requests/{request_id:str}", summary="One request log entry", dependencies=KEY_OR_SESSION)
async def get_request(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], request_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_request(principal.account_id, request_id))


ROUTES = (list_requests, get_request)
