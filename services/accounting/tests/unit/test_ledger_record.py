"""The ledger record: one declaration gives the columns, the row of an event and the request log's message."""

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_accounting.ingest import request_row
from orqen_accounting.ledger_record import REQUEST_COLUMNS, STAGED_COLUMNS, LedgerRecord, request_message
from orqen_common.catalogue import load_catalogue

AT = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
ACCOUNT, KEY = str(uuid.uuid4()), str(uuid.uuid4())
ATTEMPT = common_pb2.Attempt(provider="anthropic", model="claude-haiku-4-5", status=200, duration_ms=80.0)
TRACE = optimizer_pb2.RoutingTrace(
    mode="semantic", k=1, k_reason="best", candidates=[optimizer_pb2.ToolCandidate(name="get_weather", score=0.9)]
)


def event() -> events_pb2.RequestCompleted:
    created = Timestamp()
    created.FromDatetime(AT)
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id="req_1", account_id=ACCOUNT, api_key_id=KEY, session_id="s-1", ingress="anthropic"
        ),
        created_at=created,
        model_requested="claude-haiku-4-5",
        status=200,
        latency_ms=100.0,
        dispatch=dispatch_pb2.DispatchSummary(
            provider="anthropic",
            model="claude-haiku-4-5",
            usage=common_pb2.Usage(
                input_tokens=1200, output_tokens=30, cached_input_tokens=400, cache_write_input_tokens=700
            ),
            upstream_ms=90.0,
            attempts=[ATTEMPT],
            route_reason="requested",
        ),
        plan=optimizer_pb2.PlanStats(
            tools_input=4, tools_output=1, routing="semantic", tool_tokens_in=500, tool_tokens_out=100
        ),
        trace=TRACE,
        tools_called=["get_weather"],
        tools_offered=["get_weather", "search"],
        tools_forwarded=["get_weather"],
    )


def stored(row: tuple[Any, ...]) -> dict[str, Any]:
    """The row as Postgres gives it back: jsonb as text, every other value as written."""
    return {name: value for name, value in zip(STAGED_COLUMNS, row, strict=True) if name in REQUEST_COLUMNS}


def test_every_stored_column_is_a_field_of_the_request_log_and_the_staged_ones_come_on_top() -> None:
    assert set(REQUEST_COLUMNS) == {f.name for f in accounting_pb2.RequestRecord.DESCRIPTOR.fields}
    assert set(STAGED_COLUMNS) - set(REQUEST_COLUMNS) == {"tools_offered", "tools_forwarded"}
    assert len(set(STAGED_COLUMNS)) == len(STAGED_COLUMNS)


def test_the_row_of_an_event_holds_every_figure_in_the_declared_order() -> None:
    record = LedgerRecord(*request_row(event(), load_catalogue()))
    assert (record.account_id, record.api_key_id, record.created_at) == (uuid.UUID(ACCOUNT), uuid.UUID(KEY), AT)
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_input_tokens) == (1200, 400, 700)
    assert (record.gateway_ms, record.tool_tokens_saved, record.tokens_saved) == (10.0, 400, 400)
    assert (record.tools_offered, record.tools_forwarded) == (["get_weather", "search"], ["get_weather"])
    assert isinstance(record.cost_usd, Decimal) and record.cost_usd > 0


def test_a_stored_row_reads_back_as_the_request_log_shows_it() -> None:
    message = request_message(stored(request_row(event(), load_catalogue())))
    assert (message.account_id, message.api_key_id) == (ACCOUNT, KEY)
    assert (message.input_tokens, message.cached_input_tokens, message.cache_write_input_tokens) == (1200, 400, 700)
    assert message.created_at.ToDatetime(tzinfo=dt.UTC) == AT
    assert list(message.attempts) == [ATTEMPT] and message.trace == TRACE
    assert message.cost_usd == pytest.approx(float(LedgerRecord(*request_row(event(), load_catalogue())).cost_usd))


def test_a_request_without_key_or_routing_decision_reads_back_with_neither() -> None:
    bare = event()
    bare.context.api_key_id = ""
    bare.ClearField("trace")
    message = request_message(stored(request_row(bare, load_catalogue())))
    assert message.api_key_id == "" and not message.HasField("trace")
