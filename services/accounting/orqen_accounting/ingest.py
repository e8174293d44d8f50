"""Writes orqen.request.completed events into the request log, idempotently by request id."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from orqen.v1 import events_pb2
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.stored_json import plain_dict, to_json

log = structlog.get_logger(__name__)


def request_row(event: events_pb2.RequestCompleted) -> tuple[Any, ...]:
    """One row of the requests table, in REQUEST_COLUMNS order."""
    ctx, dispatch, plan = event.context, event.dispatch, event.plan
    return (
        ctx.request_id,
        uuid.UUID(ctx.account_id),
        uuid.UUID(ctx.api_key_id) if ctx.api_key_id else None,
        ctx.session_id,
        ctx.ingress,
        event.model_requested,
        dispatch.model,
        dispatch.provider,
        event.status,
        event.error,
        event.stream,
        dispatch.usage.input_tokens,
        dispatch.usage.output_tokens,
        dispatch.usage.cached_input_tokens,
        event.latency_ms,
        dispatch.upstream_ms,
        dispatch.ttft_ms,
        plan.tools_input,
        plan.tools_output,
        plan.routing,
        event.created_at.ToDatetime(tzinfo=dt.UTC),
        dispatch.route_reason,
        to_json([plain_dict(a) for a in dispatch.attempts]),
        to_json(plain_dict(event.trace)) if event.trace.candidates else None,
        list(event.tools_called),
    )


class RequestIngest:
    """The batch handler behind the accounting consumer."""

    def __init__(self, repo: AccountingRepository) -> None:
        self._repo = repo

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        rows: dict[str, tuple[Any, ...]] = {}
        for msg in msgs:
            try:
                event = events_pb2.RequestCompleted.FromString(msg.data)
                rows[event.context.request_id] = request_row(event)
            except (DecodeError, ValueError) as err:
                # A poison message must not block the stream; it is logged and skipped.
                log.error("undecodable request event skipped", error=repr(err), subject=msg.subject)
        if rows:
            await self._repo.insert_requests(list(rows.values()))
