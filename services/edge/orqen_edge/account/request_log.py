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
from orqen_common.errors import invalid_request
from orqen_edge.account.responses import PageLimit, page, plain
from orqen_edge.dashboard.auth import KEY_OR_SESSION
from orqen_edge.openapi import API_KEY_OR_SESSION, AUTHENTICATED, errors
from orqen_edge.runtime import Runtime


async def page_of_requests(runtime: Runtime, listing: accounting_pb2.ListRequestsRequest) -> dict[str, Any]:
    """One page of the request log in the list shape every paginated route answers with."""
    found = await runtime.downstream.list_requests(listing)
    return page(found.requests, found.next_cursor)


def request_listing(
    account_id: str,
    limit: int,
    cursor: str = "",
    *,
    model: str = "",
    status: str = "",
    session_id: str = "",
    ingress: str = "",
    since: str = "",
    until: str = "",
) -> accounting_pb2.ListRequestsRequest:
    """The request-log query for filters as a caller writes them (times as ISO 8601 text); 400 naming a bad time."""
    return accounting_pb2.ListRequestsRequest(
        account_id=account_id,
        limit=limit,
        cursor=cursor,
        model=model,
        status=status,
        session_id=session_id,
        ingress=ingress,
        since=_timestamp("since", since),
        until=_timestamp("until", until),
    )


def _timestamp(parameter: str, value: str) -> Timestamp | None:
    """The ISO 8601 time of query parameter `parameter`, None when it is not sent; 400 naming it otherwise."""
    if not value:
        return None
    stamp = Timestamp()
    try:
        parsed = dt.datetime.fromisoformat(value)
        # A time without an offset is UTC, as every time the API returns is.
        stamp.FromDatetime(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))
    except (ValueError, OverflowError):
        raise invalid_request(
            f"Invalid query parameter '{parameter}': expected an ISO 8601 time such as 2026-11-01T00:00:00Z, "
            f"got {value[:64]!r}."
        ) from None
    return stamp


@get(
    ["/v1/account/requests", "/v1/requests"],
    summary="Request log (newest first, cursor pagination, filters)",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
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
    ingress: Annotated[
        str, QueryParameter(description="The SDK shape the caller used: 'openai', 'anthropic', 'bedrock', ...")
    ] = "",
    # Times are read as text and parsed by _timestamp: Litestar's lenient conversion to a datetime
    # would take `0.5` for a Unix time in 1970.
    since: Annotated[str, QueryParameter(format="date-time", description="ISO 8601; requests at or after.")] = "",
    until: Annotated[str, QueryParameter(format="date-time", description="ISO 8601; requests before.")] = "",
) -> dict[str, Any]:
    listing = request_listing(
        principal.account_id,
        limit,
        cursor,
        model=model,
        status=status,
        session_id=session_id,
        ingress=ingress,
        since=since,
        until=until,
    )
    return await page_of_requests(runtime, listing)


@get(
    "/v1/account/requests/{request_id:str}",
    summary="One request log entry",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED, 404),
)
async def get_request(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], request_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_request(principal.account_id, request_id))


ROUTES = (list_requests, get_request)
