"""orqen.request.completed events -> ledger rows: every figure of a request, priced.

Cost and savings come from orqen_common.prices (genai-prices' bundled data, or the operator's
overrides) for the provider and model that answered, at the request's time. A request with
tokens whose model has no known price is stored with cost and savings NULL and price_unknown
set, never at $0; the model is logged once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import structlog
from nats.aio.msg import Msg

from orqen.v1 import common_pb2, events_pb2
from orqen_accounting.ledger import Ledger
from orqen_accounting.ledger_record import Completed, LedgerRecord, LedgerRow, ledger_row
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_common.prices import Prices

log = structlog.get_logger(__name__)

_STORED_PRECISION = Decimal("0.0000000001")  # money columns are numeric(20, 10)


def answering_model(event: events_pb2.RequestCompleted) -> str:
    """The model that answered, or the one requested when none did."""
    return event.dispatch.model or event.model_requested


def _money(value: Decimal) -> Decimal:
    return value.quantize(_STORED_PRECISION)


def cost_and_savings(
    event: events_pb2.RequestCompleted, tokens_saved: int, prices: Prices
) -> tuple[Decimal, Decimal] | None:
    """The request's cost and what its saved tokens would have cost; None when its price is unknown.

    A failed request without tokens (refused, or no provider answered) cost nothing whatever its
    model. Savings are the cost of the same call with the saved tokens sent as input, minus its
    cost: a saving that keeps a request below a long-context tier counts as such.
    """
    usage = event.dispatch.usage
    if event.status >= 400 and not (usage.input_tokens or usage.output_tokens):
        return Decimal(0), Decimal(0)
    at = _priced_at(event)
    provider, model = event.dispatch.provider, answering_model(event)
    cost = prices.price(provider, model, usage, at)
    if cost is None:
        return None
    if not tokens_saved:
        return _money(cost.total), Decimal(0)
    unoptimized = common_pb2.Usage()
    unoptimized.CopyFrom(usage)
    unoptimized.input_tokens += tokens_saved
    without = prices.price(provider, model, unoptimized, at)
    if without is None:  # input tokens a model priced for output alone cannot price: no savings known
        return None
    return _money(cost.total), _money(without.total - cost.total)


def cache_saving(event: events_pb2.RequestCompleted, prices: Prices) -> Decimal:
    """On a response cache hit, what its answer cost when it was paid for; else 0.

    A hit calls nothing (its usage is 0) and saves the cached answer's cost at today's prices;
    for a model with no known price the saving is unknown and counted as none.
    """
    if event.dispatch.cache != "hit":
        return Decimal(0)
    replayed = event.dispatch.cached_usage
    cost = prices.price(event.dispatch.provider, answering_model(event), replayed, _priced_at(event))
    return _money(cost.total) if cost is not None else Decimal(0)


def _priced_at(event: events_pb2.RequestCompleted) -> dt.datetime:
    return event.created_at.ToDatetime(tzinfo=dt.UTC) if event.HasField("created_at") else dt.datetime.now(dt.UTC)


def completed(event: events_pb2.RequestCompleted, prices: Prices) -> Completed:
    """The event with its figures derived: tokens saved, and cost and savings at the answering model's prices.

    ValueError when the event names no request.
    """
    ctx, dispatch, plan, trace = event.context, event.dispatch, event.plan, event.trace
    if not ctx.request_id:
        raise ValueError("event without a request id")
    usage = dispatch.usage
    ctx_in, ctx_out = (plan.ctx_tokens_in, plan.ctx_tokens_out) if plan.context_compressed else (0, 0)
    ctx_saved = max(0, ctx_in - ctx_out)
    tool_saved = max(0, plan.tool_tokens_in - plan.tool_tokens_out)
    tokens_saved = ctx_saved + tool_saved
    priced = cost_and_savings(event, tokens_saved, prices)
    cost, savings = priced if priced is not None else (None, None)
    cache_saved = cache_saving(event, prices)
    return Completed(
        event=event,
        context=ctx,
        dispatch=dispatch,
        usage=usage,
        plan=plan,
        trace=trace,
        ctx_tokens_in=ctx_in,
        ctx_tokens_out=ctx_out,
        ctx_tokens_saved=ctx_saved,
        tool_tokens_saved=tool_saved,
        tokens_saved=tokens_saved,
        cost_usd=cost,
        savings_usd=None if savings is None else savings + cache_saved,
        price_unknown=priced is None,
        cache_saved_usd=cache_saved,
    )


def request_row(event: events_pb2.RequestCompleted, prices: Prices) -> LedgerRow:
    """The ledger row of one event (orqen_accounting.ledger_record.STAGED_COLUMNS order).

    ValueError when the event names no request or no valid account.
    """
    return ledger_row(completed(event, prices))


class RequestIngest:
    """The batch handler behind the accounting consumer."""

    def __init__(self, ledger: Ledger, prices: Prices, learning: ToolLearningStore | None = None) -> None:
        """`learning`: where the tools the answers called are learned from (None: nowhere)."""
        self._ledger = ledger
        self._prices = prices
        self._learning = learning
        self._unpriced: set[tuple[str, str]] = set()

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        """Store the batch; an event that cannot be decoded or names no valid account fails it.

        The consumer then isolates that event and parks it after its last delivery (see
        orqen_common.events.DurableConsumer): nothing is dropped here.
        """
        rows: dict[str, LedgerRow] = {}
        events: dict[str, events_pb2.RequestCompleted] = {}
        for msg in msgs:
            event = events_pb2.RequestCompleted.FromString(msg.data)
            row = request_row(event, self._prices)
            record = LedgerRecord(*row)
            rows[record.request_id], events[record.request_id] = row, event  # ids that differ only in a NUL are one
            if record.price_unknown:
                self._note_unpriced(record.provider, answering_model(event))
        if not rows:
            return
        new = await self._ledger.record_new(list(rows.values()))
        if self._learning is not None:
            # Only the requests stored just now: a redelivered event teaches nothing twice.
            await self._learning.learn([event for request_id, event in events.items() if request_id in new])

    def _note_unpriced(self, provider: str, model: str) -> None:
        if (provider, model) in self._unpriced:
            return
        self._unpriced.add((provider, model))
        log.warning(
            "model has no known price: its requests are logged with price_unknown and no cost; "
            "price it in ORQEN_PRICES_FILE",
            provider=provider,
            model=model,
        )
