"""The ledger record: one declaration gives the columns, the row of an event and the request log's message."""

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from genai_prices.types import ModelPrice
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_accounting.ingest import request_row
from orqen_accounting.ledger_record import REQUEST_COLUMNS, STAGED_COLUMNS, LedgerRecord, request_message
from orqen_common.prices import PriceOverrides, Prices

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
    record = LedgerRecord(*request_row(event(), Prices()))
    assert (record.account_id, record.api_key_id, record.created_at) == (uuid.UUID(ACCOUNT), uuid.UUID(KEY), AT)
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_input_tokens) == (1200, 400, 700)
    assert (record.gateway_ms, record.tool_tokens_saved, record.tokens_saved) == (10.0, 400, 400)
    assert (record.tools_offered, record.tools_forwarded) == (["get_weather", "search"], ["get_weather"])
    assert isinstance(record.cost_usd, Decimal) and record.cost_usd > 0


def test_a_stored_row_reads_back_as_the_request_log_shows_it() -> None:
    message = request_message(stored(request_row(event(), Prices())))
    assert (message.account_id, message.api_key_id) == (ACCOUNT, KEY)
    assert (message.input_tokens, message.cached_input_tokens, message.cache_write_input_tokens) == (1200, 400, 700)
    assert message.created_at.ToDatetime(tzinfo=dt.UTC) == AT
    assert list(message.attempts) == [ATTEMPT] and message.trace == TRACE
    assert message.cost_usd == pytest.approx(float(LedgerRecord(*request_row(event(), Prices())).cost_usd))


def test_a_request_without_key_or_routing_decision_reads_back_with_neither() -> None:
    bare = event()
    bare.context.api_key_id = ""
    bare.ClearField("trace")
    message = request_message(stored(request_row(bare, Prices())))
    assert message.api_key_id == "" and not message.HasField("trace")


def test_the_cost_is_each_part_of_the_tokens_at_its_own_price_and_the_savings_at_the_input_price() -> None:
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per 1M tokens.
    record = LedgerRecord(*request_row(event(), Prices()))
    assert record.cost_usd == Decimal("0.001165")  # 100 uncached, 400 read, 700 written, 30 out
    assert record.savings_usd == Decimal("0.0004")  # 400 tool tokens kept out, at $1
    assert record.price_unknown is False


def test_a_model_without_a_known_price_is_stored_without_cost_never_at_zero() -> None:
    unknown = event()
    unknown.dispatch.provider, unknown.dispatch.model = "my-vllm", "llama-local"
    record = LedgerRecord(*request_row(unknown, Prices()))
    assert (record.cost_usd, record.savings_usd, record.price_unknown) == (None, None, True)
    message = request_message(stored(request_row(unknown, Prices())))
    assert message.price_unknown and not message.HasField("cost_usd") and not message.HasField("savings_usd")


def test_a_failed_request_without_tokens_costs_nothing_whatever_its_model() -> None:
    refused = event()
    refused.status = 502
    refused.dispatch.provider, refused.dispatch.model = "my-vllm", "llama-local"
    refused.dispatch.usage.Clear()
    record = LedgerRecord(*request_row(refused, Prices()))
    assert (record.cost_usd, record.savings_usd, record.price_unknown) == (0, 0, False)


def test_an_answer_priced_in_audio_hours_is_unknown_not_free_though_it_reports_no_tokens() -> None:
    transcribed = event()
    transcribed.dispatch.provider, transcribed.dispatch.model = "openai", "whisper-1"
    transcribed.dispatch.usage.Clear()
    transcribed.plan.Clear()
    record = LedgerRecord(*request_row(transcribed, Prices()))
    assert (record.cost_usd, record.price_unknown) == (None, True)


def test_an_operator_override_prices_the_ledger() -> None:
    custom = event()
    custom.dispatch.provider, custom.dispatch.model = "my-vllm", "llama-local"
    prices = Prices(PriceOverrides.model_validate({"my-vllm/llama-local": {"input": 2, "output": 10}}))
    record = LedgerRecord(*request_row(custom, prices))
    assert record.cost_usd == Decimal("0.0027")  # 1200 in at $2 (no cache prices: input), 30 out at $10
    assert record.savings_usd == Decimal("0.0008") and record.price_unknown is False


def test_savings_that_keep_a_request_below_a_long_context_tier_count_in_full() -> None:
    # claude-sonnet-4-5: $3 per 1M input up to 200k input tokens, $6 for all of them above.
    long = event()
    long.dispatch.model = "claude-sonnet-4-5"
    long.dispatch.usage.CopyFrom(common_pb2.Usage(input_tokens=199_000))
    long.plan.CopyFrom(optimizer_pb2.PlanStats(tool_tokens_in=2_500, tool_tokens_out=500))
    record = LedgerRecord(*request_row(long, Prices()))
    assert record.cost_usd == Decimal("0.597")
    assert record.savings_usd == Decimal("1.206") - Decimal("0.597")


def test_savings_a_model_cannot_price_make_the_request_unknown_not_a_failed_batch() -> None:
    # A model priced for output tokens alone: a call without input is priced, its saved input is not.
    prices = Prices()
    prices._overrides["acme/writer"] = ModelPrice(output_mtok=Decimal(1))
    odd = event()
    odd.dispatch.provider, odd.dispatch.model = "acme", "writer"
    odd.dispatch.usage.CopyFrom(common_pb2.Usage(output_tokens=10))
    record = LedgerRecord(*request_row(odd, prices))
    assert (record.cost_usd, record.price_unknown) == (None, True)
