"""orqen.request.completed events -> ledger rows: every figure of a request, priced.

Costs and savings come from the model price catalogue (orqen_common.catalogue) at the
list prices of the model that answered; a model it does not price costs 0 and is logged once.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import structlog
from nats.aio.msg import Msg

from orqen.v1 import events_pb2
from orqen_accounting.ledger import Ledger
from orqen_accounting.ledger_record import Completed, LedgerRecord, LedgerRow, ledger_row
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_common.catalogue import Catalogue

log = structlog.get_logger(__name__)

_PER_TOKEN = Decimal("0.000001")  # catalogue prices are per 1M tokens
_STORED_PRECISION = Decimal("0.0000000001")  # money columns are numeric(20, 10)


def _money(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_STORED_PRECISION)


def answering_model(event: events_pb2.RequestCompleted) -> str:
    """The model that answered, or the one requested when none did."""
    return event.dispatch.model or event.model_requested


def completed(event: events_pb2.RequestCompleted, catalogue: Catalogue) -> Completed:
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
    cost, savings = Decimal(0), Decimal(0)
    model = answering_model(event)
    price = catalogue.get(model)
    if price is not None:
        # Cache writes are a part of input_tokens, priced as input.
        cost = _money(
            catalogue.cost_usd(model, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) or 0.0
        )
        savings = (tokens_saved * Decimal(repr(price.input)) * _PER_TOKEN).quantize(_STORED_PRECISION)
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
        savings_usd=savings,
    )


def request_row(event: events_pb2.RequestCompleted, catalogue: Catalogue) -> LedgerRow:
    """The ledger row of one event (orqen_accounting.ledger_record.STAGED_COLUMNS order).

    ValueError when the event names no request or no valid account.
    """
    return ledger_row(completed(event, catalogue))


class RequestIngest:
    """The batch handler behind the accounting consumer."""

    def __init__(self, ledger: Ledger, catalogue: Catalogue, learning: ToolLearningStore | None = None) -> None:
        """`learning`: where the tools the answers called are learned from (None: nowhere)."""
        self._ledger = ledger
        self._catalogue = catalogue
        self._learning = learning
        self._unpriced: set[str] = set()

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        """Store the batch; an event that cannot be decoded or names no valid account fails it.

        The consumer then isolates that event and parks it after its last delivery (see
        orqen_common.events.DurableConsumer): nothing is dropped here.
        """
        rows: dict[str, LedgerRow] = {}
        events: dict[str, events_pb2.RequestCompleted] = {}
        for msg in msgs:
            event = events_pb2.RequestCompleted.FromString(msg.data)
            row = request_row(event, self._catalogue)
            request_id = LedgerRecord(*row).request_id  # as stored: ids that differ only in a NUL are one
            rows[request_id], events[request_id] = row, event
            self._note_unpriced(answering_model(event))
        if not rows:
            return
        new = await self._ledger.record_new(list(rows.values()))
        if self._learning is not None:
            # Only the requests stored just now: a redelivered event teaches nothing twice.
            await self._learning.learn([event for request_id, event in events.items() if request_id in new])

    def _note_unpriced(self, model: str) -> None:
        if not model or model in self._unpriced or self._catalogue.get(model) is not None:
            return
        self._unpriced.add(model)
        log.warning("model not in the price catalogue; its requests cost 0", model=model)
