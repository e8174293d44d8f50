"""The daily rollups of a batch of newly recorded requests, aggregated before they are written.

A batch of 500 events of one busy account becomes a handful of usage rows, one row per
session and one per tool, so the upserts stay cheap however fast events arrive.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from orqen_accounting import histogram

if TYPE_CHECKING:
    from orqen_accounting.ingest import LedgerEntry


@dataclass(slots=True)
class UsageRow:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    optimized: int = 0
    tools_input: int = 0
    tools_output: int = 0
    tool_tokens_in: int = 0
    tool_tokens_out: int = 0
    ctx_tokens_in: int = 0
    ctx_tokens_out: int = 0
    tokens_saved: int = 0
    cost_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)
    latency_ms_sum: float = 0.0
    upstream_ms_sum: float = 0.0
    gateway_ms_sum: float = 0.0
    ttft_ms_sum: float = 0.0
    streamed: int = 0
    latency_histogram: list[int] = field(default_factory=histogram.empty)

    def add(self, entry: LedgerEntry) -> None:
        event, plan, usage = entry.event, entry.event.plan, entry.event.dispatch.usage
        self.requests += 1
        self.errors += entry.failed
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.optimized += bool(plan.routing or plan.context_compressed)
        self.tools_input += plan.tools_input
        self.tools_output += plan.tools_output
        self.tool_tokens_in += plan.tool_tokens_in
        self.tool_tokens_out += plan.tool_tokens_out
        if plan.context_compressed:
            self.ctx_tokens_in += plan.ctx_tokens_in
            self.ctx_tokens_out += plan.ctx_tokens_out
        self.tokens_saved += entry.tokens_saved
        self.cost_usd += entry.cost_usd
        self.savings_usd += entry.savings_usd
        self.latency_ms_sum += event.latency_ms
        self.upstream_ms_sum += event.dispatch.upstream_ms
        self.gateway_ms_sum += entry.gateway_ms
        if event.stream and event.dispatch.ttft_ms:
            self.ttft_ms_sum += event.dispatch.ttft_ms
            self.streamed += 1
        self.latency_histogram[histogram.bucket_of(event.latency_ms)] += 1


@dataclass(slots=True)
class SessionRow:
    first_at: dt.datetime
    last_at: dt.datetime
    last_model: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_saved: int = 0
    cost_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)

    def add(self, entry: LedgerEntry) -> None:
        usage = entry.event.dispatch.usage
        self.first_at = min(self.first_at, entry.created_at)
        if entry.created_at >= self.last_at:
            self.last_at, self.last_model = entry.created_at, entry.model
        self.requests += 1
        self.errors += entry.failed
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.tokens_saved += entry.tokens_saved
        self.cost_usd += entry.cost_usd
        self.savings_usd += entry.savings_usd


@dataclass(slots=True)
class ToolRow:
    offered: int = 0
    forwarded: int = 0
    called: int = 0
    errors: int = 0
    called_not_forwarded: int = 0


UsageKey = tuple[uuid.UUID, dt.date, str, str, str]  # account, day, provider, model, routing
SessionKey = tuple[uuid.UUID, str]
ToolKey = tuple[uuid.UUID, dt.date, str]


@dataclass(slots=True)
class Rollups:
    usage: dict[UsageKey, UsageRow] = field(default_factory=dict)
    sessions: dict[SessionKey, SessionRow] = field(default_factory=dict)
    tools: dict[ToolKey, ToolRow] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[LedgerEntry]) -> Rollups:
        rollups = cls()
        for entry in entries:
            rollups.add(entry)
        return rollups

    def add(self, entry: LedgerEntry) -> None:
        event = entry.event
        day = entry.created_at.date()
        usage_key = (entry.account_id, day, event.dispatch.provider, entry.model, event.plan.routing)
        self.usage.setdefault(usage_key, UsageRow()).add(entry)
        if event.context.session_id:
            session_key = (entry.account_id, event.context.session_id)
            session = self.sessions.get(session_key)
            if session is None:
                session = self.sessions[session_key] = SessionRow(entry.created_at, entry.created_at, entry.model)
            session.add(entry)
        self._add_tools(entry, day)

    def _add_tools(self, entry: LedgerEntry, day: dt.date) -> None:
        event = entry.event
        offered, forwarded, called = set(event.tools_offered), set(event.tools_forwarded), set(event.tools_called)
        for name in offered | called:
            row = self.tools.setdefault((entry.account_id, day, name), ToolRow())
            row.offered += name in offered
            row.forwarded += name in forwarded
            row.called += name in called
            row.errors += entry.failed and name in offered
            row.called_not_forwarded += name in called and name not in forwarded
