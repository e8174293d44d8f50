"""The request log's record, declared once: every column, how an event fills it, how it is shown.

`LedgerRecord`'s fields are the columns of `requests` in the order the ledger writes them,
then the columns only staged for the rollups (`staged`). Everything else is derived from it
once, at import: the stored and staged column lists, the row of an event, and the
`RequestRecord` message of a stored row. Adding a column to the request log is a field
here, the field in `RequestRecord` (accounting.proto) and a migration.

Rows travel as plain tuples in field order, which is what COPY takes: building one costs a
call per column and no reflection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_accounting.stored_json import from_json, list_from_json, plain_dict, to_json
from orqen_common.db import storable_text

T = TypeVar("T")

# A ledger row: LedgerRecord's values in field order.
LedgerRow = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Completed:
    """A request.completed event, its parts unpacked once, with the figures the ingest derives from it."""

    event: events_pb2.RequestCompleted
    context: common_pb2.RequestContext
    dispatch: dispatch_pb2.DispatchSummary
    usage: common_pb2.Usage
    plan: optimizer_pb2.PlanStats
    trace: optimizer_pb2.RoutingTrace
    ctx_tokens_in: int  # 0 unless the context was compressed
    ctx_tokens_out: int
    ctx_tokens_saved: int
    tool_tokens_saved: int
    tokens_saved: int
    cost_usd: Decimal | None  # None: the model has no known price (price_unknown)
    savings_usd: Decimal | None
    price_unknown: bool
    cache_saved_usd: Decimal  # on a response cache hit, the list-price cost of the answer replayed (in savings_usd)


def _as_stored(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Column:
    from_event: Callable[[Completed], Any]
    to_message: Callable[[Any], Any] | None  # None: staged only, never stored nor shown


def column(from_event: Callable[[Completed], T], *, to_message: Callable[[T], Any] = _as_stored) -> T:
    """A stored column: its value in a new row, and its `RequestRecord` field from the stored value."""
    return cast(T, field(metadata={_Column: _Column(from_event, to_message)}))


def staged(from_event: Callable[[Completed], T]) -> T:
    """A column only staged with the batch, for the rollups to read (see orqen_accounting.ledger)."""
    return cast(T, field(metadata={_Column: _Column(from_event, None)}))


def _money(value: Decimal | None) -> float | None:
    """A stored amount as the message's optional double: unset (None) when the price is unknown."""
    return None if value is None else float(value)


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One request as the ledger stores it; each field a column of `requests` unless `staged`.

    `LedgerRecord(*row)` reads a ledger row by name.
    """

    request_id: str = column(lambda c: c.context.request_id)
    account_id: uuid.UUID = column(lambda c: uuid.UUID(c.context.account_id), to_message=str)
    api_key_id: uuid.UUID | None = column(
        lambda c: uuid.UUID(c.context.api_key_id) if c.context.api_key_id else None,
        to_message=lambda stored: str(stored or ""),
    )
    session_id: str = column(lambda c: c.context.session_id)
    ingress: str = column(lambda c: c.context.ingress)
    model_requested: str = column(lambda c: c.event.model_requested)
    model_used: str = column(lambda c: c.dispatch.model)
    provider: str = column(lambda c: c.dispatch.provider)
    status: int = column(lambda c: c.event.status)
    error: str = column(lambda c: c.event.error)
    stream: bool = column(lambda c: c.event.stream)
    input_tokens: int = column(lambda c: c.usage.input_tokens)
    output_tokens: int = column(lambda c: c.usage.output_tokens)
    cached_input_tokens: int = column(lambda c: c.usage.cached_input_tokens)
    cache_write_input_tokens: int = column(lambda c: c.usage.cache_write_input_tokens)
    latency_ms: float = column(lambda c: c.event.latency_ms)
    upstream_ms: float = column(lambda c: c.dispatch.upstream_ms)
    ttft_ms: float = column(lambda c: c.dispatch.ttft_ms)
    tools_input: int = column(lambda c: c.plan.tools_input)
    tools_output: int = column(lambda c: c.plan.tools_output)
    routing: str = column(lambda c: c.plan.routing)
    created_at: dt.datetime = column(lambda c: c.event.created_at.ToDatetime(tzinfo=dt.UTC), to_message=_timestamp)
    route_reason: str = column(lambda c: c.dispatch.route_reason)
    attempts: str = column(  # jsonb
        lambda c: to_json([plain_dict(a) for a in c.dispatch.attempts]),
        to_message=lambda stored: list_from_json(stored, common_pb2.Attempt),
    )
    trace: str | None = column(  # jsonb; NULL when the optimizer made no routing decision
        lambda c: to_json(plain_dict(c.trace)) if c.trace.candidates else None,
        to_message=lambda stored: from_json(stored, optimizer_pb2.RoutingTrace()) if stored else None,
    )
    tools_called: list[str] = column(lambda c: list(c.event.tools_called))
    gateway_ms: float = column(lambda c: max(0.0, c.event.latency_ms - c.dispatch.upstream_ms))
    ctx_tokens_in: int = column(lambda c: c.ctx_tokens_in)
    ctx_tokens_out: int = column(lambda c: c.ctx_tokens_out)
    ctx_tokens_saved: int = column(lambda c: c.ctx_tokens_saved)
    tool_tokens_in: int = column(lambda c: c.plan.tool_tokens_in)
    tool_tokens_out: int = column(lambda c: c.plan.tool_tokens_out)
    tool_tokens_saved: int = column(lambda c: c.tool_tokens_saved)
    tokens_saved: int = column(lambda c: c.tokens_saved)
    k: int = column(lambda c: c.trace.k)
    k_reason: str = column(lambda c: c.trace.k_reason)
    cost_usd: Decimal | None = column(lambda c: c.cost_usd, to_message=_money)
    savings_usd: Decimal | None = column(lambda c: c.savings_usd, to_message=_money)
    price_unknown: bool = column(lambda c: c.price_unknown)
    budget_warning: str = column(lambda c: c.event.budget_warning)
    cache: str = column(lambda c: c.dispatch.cache)
    cache_saved_usd: Decimal = column(lambda c: c.cache_saved_usd, to_message=float)
    # Counted in tool health, not stored per request.
    tools_offered: list[str] = staged(lambda c: list(c.event.tools_offered))
    tools_forwarded: list[str] = staged(lambda c: list(c.event.tools_forwarded))


_SPECS: tuple[tuple[str, _Column], ...] = tuple((f.name, f.metadata[_Column]) for f in fields(LedgerRecord))
# Every column of a ledger row, in row order (the staging table's COPY columns).
STAGED_COLUMNS = tuple(name for name, _ in _SPECS)
# The columns stored in `requests` (and read back for the request log).
REQUEST_COLUMNS = tuple(name for name, spec in _SPECS if spec.to_message is not None)
_FROM_EVENT = tuple(spec.from_event for _, spec in _SPECS)
_TO_MESSAGE = tuple((name, spec.to_message) for name, spec in _SPECS if spec.to_message is not None)


def ledger_row(completed: Completed) -> LedgerRow:
    """The row of one event, in STAGED_COLUMNS order, its strings as Postgres can hold them."""
    return tuple([_storable(from_event(completed)) for from_event in _FROM_EVENT])


def _storable(value: Any) -> Any:
    """Any publisher's strings (a model name, an error, tool names) stored whatever they hold."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [storable_text(item) if isinstance(item, str) else item for item in value]
    return value


def request_message(stored: Mapping[str, Any]) -> accounting_pb2.RequestRecord:
    """A stored row of `requests` (every REQUEST_COLUMNS) as the request log shows it."""
    return accounting_pb2.RequestRecord(**{name: to_message(stored[name]) for name, to_message in _TO_MESSAGE})
