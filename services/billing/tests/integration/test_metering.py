"""Billing meters request events idempotently and projects the month's charge."""

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import billing_pb2, common_pb2, dispatch_pb2, events_pb2
from orqen_billing.__main__ import MIGRATIONS, SCHEMA
from orqen_billing.metering import UsageMeter
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_common.context import SERVICE_PRINCIPAL, principal_var
from orqen_common.db import create_pool
from orqen_common.migrations import upgrade_to_head

ACCOUNT = "5f0a4b3e-8e6e-4c1e-9a51-2f3f7d7a9c10"


class Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def _event(request_id: str, tokens: int) -> Msg:
    created = Timestamp()
    created.FromDatetime(dt.datetime.now(dt.UTC))
    event = events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(request_id=request_id, account_id=ACCOUNT),
        created_at=created,
        dispatch=dispatch_pb2.DispatchSummary(usage=common_pb2.Usage(input_tokens=tokens, output_tokens=1)),
    )
    return Msg(event.SerializeToString())


async def test_usage_is_metered_once_per_request(orqen_database_url: str, monkeypatch: Any) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool: asyncpg.Pool = await create_pool(orqen_database_url, 2, SCHEMA)
    try:
        meter = UsageMeter(pool)
        batch: Sequence[Any] = [_event("r1", 99), _event("r2", 199)]
        await meter(batch)
        await meter(batch)  # redelivery
        monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "t")
        principal_var.set(SERVICE_PRINCIPAL)
        status = await BillingServicer(pool, BillingSettings()).GetBilling(  # type: ignore[call-arg]
            billing_pb2.GetBillingRequest(account_id=ACCOUNT),
            None,  # type: ignore[arg-type]
        )
    finally:
        await pool.close()
    assert (status.tier, status.requests, status.tokens) == ("free", 2, 300)
    assert status.projected_charge_cents == 0 and status.included_tokens == 1_000_000
