"""Meters request events into the billing schema, and computes the projected charge."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg

from orqen.v1 import events_pb2
from orqen_billing.settings import Plan
from orqen_common.db import storable_text


class UsageMeter:
    """The batch handler behind the billing consumer: one row per request id."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        """Meter the batch; an undecodable event or one with no valid account fails it.

        The consumer then isolates that event and parks it after its last delivery (see
        orqen_common.events.DurableConsumer): nothing is dropped here.
        """
        rows = {}
        for msg in msgs:
            event = events_pb2.RequestCompleted.FromString(msg.data)
            if not event.context.request_id:
                raise ValueError("event without a request id")
            usage = event.dispatch.usage
            request_id = storable_text(event.context.request_id)
            rows[request_id] = (
                request_id,
                uuid.UUID(event.context.account_id),
                usage.input_tokens + usage.output_tokens,
                event.created_at.ToDatetime(tzinfo=dt.UTC),
            )
        if rows:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO metered_requests (request_id, account_id, tokens, created_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
                    list(rows.values()),
                )


@dataclass(frozen=True, slots=True)
class Period:
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def month_of(cls, now: dt.datetime) -> Period:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return cls(start, end)

    def elapsed_fraction(self, now: dt.datetime) -> float:
        return max((now - self.start) / (self.end - self.start), 1e-6)


def projected_charge_cents(plan: Plan, tokens_so_far: int, fraction_elapsed: float) -> int:
    """Base price plus overage on the tokens the period is on course to use."""
    projected_tokens = tokens_so_far / fraction_elapsed
    overage = max(0.0, projected_tokens - plan.included_tokens)
    return plan.base_cents + round(overage / 1_000_000 * plan.overage_cents_per_million)
