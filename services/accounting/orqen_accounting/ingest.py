"""orqen.request.completed events -> ledger entries: every figure of a request, priced.

Costs and savings come from the model price catalogue (orqen_common.catalogue) at the
list prices of the model that answered; a model it does not price costs 0 and is logged once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from orqen.v1 import events_pb2
from orqen_accounting.ledger import Ledger
from orqen_accounting.stored_json import plain_dict, to_json
from orqen_common.catalogue import Catalogue

log = structlog.get_logger(__name__)

_PER_TOKEN = Decimal("0.000001")  # catalogue prices are per 1M tokens
_CENT_FRACTIONS = Decimal("0.0000000001")  # the precision money is stored with (numeric(20, 10))


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One request as the ledger stores it (`row`, in REQUEST_COLUMNS order) and counts it."""

    row: tuple[Any, ...]
    event: events_pb2.RequestCompleted
    account_id: uuid.UUID
    created_at: dt.datetime
    model: str  # the model that answered, or the one requested when none did
    gateway_ms: float
    tokens_saved: int
    cost_usd: Decimal
    savings_usd: Decimal

    @property
    def request_id(self) -> str:
        return self.event.context.request_id

    @property
    def failed(self) -> bool:
        return self.event.status >= 400


def _money(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT_FRACTIONS)


def entry_of(event: events_pb2.RequestCompleted, catalogue: Catalogue) -> LedgerEntry:
    """The ledger entry of one event; ValueError when it names no valid account or request."""
    ctx, dispatch, plan, trace = event.context, event.dispatch, event.plan, event.trace
    if not ctx.request_id:
        raise ValueError("event without a request id")
    account_id = uuid.UUID(ctx.account_id)
    created_at = event.created_at.ToDatetime(tzinfo=dt.UTC)
    usage = dispatch.usage
    model = dispatch.model or event.model_requested
    ctx_saved = max(0, plan.ctx_tokens_in - plan.ctx_tokens_out) if plan.context_compressed else 0
    tool_saved = max(0, plan.tool_tokens_in - plan.tool_tokens_out)
    tokens_saved = ctx_saved + tool_saved
    cost, savings = Decimal(0), Decimal(0)
    entry = catalogue.get(model)
    if entry is not None:
        cost = _money(
            catalogue.cost_usd(model, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) or 0.0
        )
        savings = (Decimal(tokens_saved) * Decimal(repr(entry.input)) * _PER_TOKEN).quantize(_CENT_FRACTIONS)
    gateway_ms = max(0.0, event.latency_ms - dispatch.upstream_ms)
    row = (
        ctx.request_id,
        account_id,
        uuid.UUID(ctx.api_key_id) if ctx.api_key_id else None,
        ctx.session_id,
        ctx.ingress,
        event.model_requested,
        dispatch.model,
        dispatch.provider,
        event.status,
        event.error,
        event.stream,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        event.latency_ms,
        dispatch.upstream_ms,
        dispatch.ttft_ms,
        plan.tools_input,
        plan.tools_output,
        plan.routing,
        created_at,
        dispatch.route_reason,
        to_json([plain_dict(a) for a in dispatch.attempts]),
        to_json(plain_dict(trace)) if trace.candidates else None,
        list(event.tools_called),
        gateway_ms,
        plan.ctx_tokens_in,
        plan.ctx_tokens_out,
        ctx_saved,
        tool_saved,
        tokens_saved,
        trace.k,
        trace.k_reason,
        cost,
        savings,
    )
    return LedgerEntry(row, event, account_id, created_at, model, gateway_ms, tokens_saved, cost, savings)


class RequestIngest:
    """The batch handler behind the accounting consumer."""

    def __init__(self, ledger: Ledger, catalogue: Catalogue) -> None:
        self._ledger = ledger
        self._catalogue = catalogue
        self._unpriced: set[str] = set()

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        entries: dict[str, LedgerEntry] = {}
        for msg in msgs:
            try:
                entry = entry_of(events_pb2.RequestCompleted.FromString(msg.data), self._catalogue)
            except (DecodeError, ValueError) as err:
                # A poison message must not block the stream; it is logged and skipped.
                log.error("undecodable request event skipped", error=repr(err), subject=msg.subject)
                continue
            entries[entry.request_id] = entry
            self._note_unpriced(entry)
        if entries:
            await self._ledger.record(list(entries.values()))

    def _note_unpriced(self, entry: LedgerEntry) -> None:
        if not entry.model or entry.model in self._unpriced or self._catalogue.get(entry.model) is not None:
            return
        self._unpriced.add(entry.model)
        log.warning("model not in the price catalogue; its requests cost 0", model=entry.model)
