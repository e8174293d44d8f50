"""The orqen.v1.Billing gRPC service."""

from __future__ import annotations

import datetime as dt

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import billing_pb2, billing_pb2_grpc
from orqen_billing.metering import Period, projected_charge_cents
from orqen_billing.settings import BillingSettings
from orqen_common.context import account_scope
from orqen_common.grpc_server import ServicerContext


class BillingServicer(billing_pb2_grpc.BillingServicer):
    def __init__(self, pool: asyncpg.Pool, settings: BillingSettings) -> None:
        self._pool = pool
        self._settings = settings

    async def GetBilling(
        self, request: billing_pb2.GetBillingRequest, context: ServicerContext
    ) -> billing_pb2.BillingStatus:
        account_id = account_scope(request.account_id)
        now = dt.datetime.now(dt.UTC)
        period = Period.month_of(now)
        row = await self._pool.fetchrow(
            """
            SELECT coalesce((SELECT tier FROM subscriptions WHERE account_id = $1::uuid), 'free') AS tier,
                   count(*) AS requests, coalesce(sum(tokens), 0)::bigint AS tokens
            FROM metered_requests WHERE account_id = $1::uuid AND created_at >= $2 AND created_at < $3
            """,
            account_id,
            period.start,
            period.end,
        )
        assert row is not None
        plans = self._settings.plans
        plan = plans.get(row["tier"], plans["free"])
        start, end = Timestamp(), Timestamp()
        start.FromDatetime(period.start)
        end.FromDatetime(period.end)
        return billing_pb2.BillingStatus(
            tier=row["tier"],
            period_start=start,
            period_end=end,
            requests=row["requests"],
            tokens=row["tokens"],
            included_tokens=plan.included_tokens,
            projected_charge_cents=projected_charge_cents(plan, row["tokens"], period.elapsed_fraction(now)),
            currency=self._settings.currency,
        )
