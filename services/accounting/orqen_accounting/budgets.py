"""Budgets and per-key limits: what is stored, how it is checked, and the ledger's use of a period.

A budget caps the spend (USD at list prices, as the ledger prices requests) and/or the tokens
(input + output) of an account or of one of its keys per UTC calendar period. The edge enforces
them with Redis counters; the ledger's sums here seed those counters when Redis lost them and
correct them when they fell behind (orqen_edge.budgets).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2
from orqen_accounting.validation import checked_uuid
from orqen_common.budget_period import PERIODS, period_end, period_start
from orqen_common.errors import invalid_request

DEFAULT_SOFT_PERCENT = 80
MAX_ALLOWED_MODELS = 100
MAX_MODEL_PATTERN = 200
# Per-minute limits above this are no limit anyone means; the bound keeps counters in range.
MAX_PER_MINUTE = 1_000_000_000
_STORED_PRECISION = Decimal("0.0000000001")  # max_spend_usd is numeric(20, 10)
_MAX_SPEND_USD = 1e9

_BUDGET = (
    "id::text, account_id::text, coalesce(api_key_id::text, '') AS api_key_id, period, "
    "max_spend_usd::float8 AS max_spend_usd, max_tokens, soft_percent, created_at, updated_at"
)
_KEY_LIMITS = "id::text, name, prefix, created_at, last_used_at, revoked_at, allowed_models, rpm, tpm"


def checked_key_limits(request: accounting_pb2.ApiKeyLimits) -> tuple[list[str], int, int]:
    """The allowed models (deduplicated, in order) and per-minute limits of a key, or a 400 naming the field."""
    if len(request.allowed_models) > MAX_ALLOWED_MODELS:
        raise invalid_request(f"allowed_models holds at most {MAX_ALLOWED_MODELS} names or patterns.")
    models: list[str] = []
    for model in request.allowed_models:
        if not model.strip() or len(model) > MAX_MODEL_PATTERN or "\x00" in model:
            raise invalid_request(
                f"Invalid allowed_models entry {model[:40]!r}: a model name or pattern is 1 to "
                f"{MAX_MODEL_PATTERN} characters."
            )
        if model not in models:
            models.append(model)
    for field, value in (("rpm", request.rpm), ("tpm", request.tpm)):
        if not 0 <= value <= MAX_PER_MINUTE:
            raise invalid_request(f"{field} must be between 0 (the default limit) and {MAX_PER_MINUTE}.")
    return models, request.rpm, request.tpm


def checked_budget(request: accounting_pb2.BudgetDefinition) -> tuple[str | None, str, Decimal, int, int]:
    """(key id or None, period, max spend, max tokens, soft percent) of a budget, or a 400 naming the field."""
    key_id = checked_uuid(request.api_key_id, "api_key_id") if request.api_key_id else None
    if request.period not in PERIODS:
        raise invalid_request(f"Invalid period {request.period[:20]!r}: expected one of {', '.join(PERIODS)}.")
    spend = request.max_spend_usd
    if not math.isfinite(spend) or not 0 <= spend <= _MAX_SPEND_USD:
        raise invalid_request(f"max_spend_usd must be between 0 and {_MAX_SPEND_USD:.0f}.")
    if request.max_tokens < 0:
        raise invalid_request("max_tokens cannot be negative.")
    # As stored: an amount below the stored precision (1e-10 USD) is no limit at all.
    max_spend = Decimal(repr(spend)).quantize(_STORED_PRECISION)
    if max_spend == 0 and request.max_tokens == 0:
        raise invalid_request(
            "A budget needs max_spend_usd or max_tokens (or both); max_spend_usd is at least 0.0000000001."
        )
    soft = request.soft_percent or DEFAULT_SOFT_PERCENT
    if not 1 <= soft <= 100:
        raise invalid_request("soft_percent must be between 1 and 100.")
    return key_id, request.period, max_spend, request.max_tokens, soft


class BudgetRepository:
    """SQL of budgets, their alerts and the per-key limits; every statement is scoped by account."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set_key_limits(
        self, account_id: str, api_key_id: str, allowed_models: list[str], rpm: int, tpm: int
    ) -> asyncpg.Record | None:
        """The key's row after setting its limits; None when the account has no such key."""
        return await self._pool.fetchrow(
            f"""
            UPDATE api_keys SET allowed_models = $3, rpm = $4, tpm = $5
            WHERE id = $2::uuid AND account_id = $1::uuid
            RETURNING {_KEY_LIMITS}
            """,
            account_id,
            api_key_id,
            allowed_models,
            rpm,
            tpm,
        )

    async def put(
        self, account_id: str, api_key_id: str | None, period: str, max_spend: Decimal, max_tokens: int, soft: int
    ) -> asyncpg.Record | None:
        """The budget of the scope and period, created or with its limits replaced; None for a key the account lacks."""
        return await self._pool.fetchrow(
            f"""
            INSERT INTO budgets (account_id, api_key_id, period, max_spend_usd, max_tokens, soft_percent)
            SELECT $1::uuid, $2::uuid, $3, $4, $5, $6
            WHERE $2::uuid IS NULL OR EXISTS (SELECT 1 FROM api_keys WHERE id = $2::uuid AND account_id = $1::uuid)
            ON CONFLICT (account_id, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'::uuid), period)
            DO UPDATE SET max_spend_usd = EXCLUDED.max_spend_usd, max_tokens = EXCLUDED.max_tokens,
                          soft_percent = EXCLUDED.soft_percent, updated_at = now()
            RETURNING {_BUDGET}
            """,
            account_id,
            api_key_id,
            period,
            max_spend,
            max_tokens,
            soft,
        )

    async def of_account(self, account_id: str) -> list[asyncpg.Record]:
        """The account's budgets: the account's own first, then per key; day, week, month."""
        rows: list[asyncpg.Record] = await self._pool.fetch(
            f"""
            SELECT {_BUDGET} FROM budgets WHERE account_id = $1::uuid
            ORDER BY api_key_id NULLS FIRST, array_position(ARRAY['day', 'week', 'month'], period)
            """,
            account_id,
        )
        return rows

    async def delete(self, account_id: str, budget_id: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            f"DELETE FROM budgets WHERE id = $2::uuid AND account_id = $1::uuid RETURNING {_BUDGET}",
            account_id,
            budget_id,
        )

    async def keys_with_limits(self, account_id: str) -> list[asyncpg.Record]:
        """Every key of the account (revoked ones too: a revoked key is refused before its limits matter)."""
        rows: list[asyncpg.Record] = await self._pool.fetch(
            "SELECT id::text, name, prefix, allowed_models, rpm, tpm FROM api_keys WHERE account_id = $1::uuid",
            account_id,
        )
        return rows

    async def use(self, account_id: str, api_key_id: str | None, since: dt.datetime) -> tuple[float, int]:
        """The ledger's spend (USD) and tokens of the account, or of one key, since `since`.

        An account's sum reads the daily rollups (periods start at UTC midnight, as rollup days
        do); a key's reads its raw rows through their (api_key_id, created_at) index.
        """
        if api_key_id is None:
            row = await self._pool.fetchrow(
                """
                SELECT coalesce(sum(cost_usd), 0)::float8 AS spend,
                       coalesce(sum(input_tokens + output_tokens), 0)::int8 AS tokens
                FROM usage_daily WHERE account_id = $1::uuid AND day >= $2::date
                """,
                account_id,
                since.date(),
            )
        else:
            row = await self._pool.fetchrow(
                """
                SELECT coalesce(sum(cost_usd), 0)::float8 AS spend,
                       coalesce(sum(input_tokens + output_tokens), 0)::int8 AS tokens
                FROM requests WHERE api_key_id = $2::uuid AND account_id = $1::uuid AND created_at >= $3
                """,
                account_id,
                api_key_id,
                since,
            )
        assert row is not None  # an aggregate always answers one row
        return float(row["spend"]), int(row["tokens"])

    async def record_alert(
        self, account_id: str, budget_id: str, start: dt.datetime, threshold: str, spend: float, tokens: int
    ) -> bool:
        """Record a crossing once per budget, period and threshold; False when the budget is not the account's."""
        inserted = await self._pool.fetchval(
            """
            WITH budget AS (SELECT id FROM budgets WHERE id = $2::uuid AND account_id = $1::uuid),
            new AS (
                INSERT INTO budget_alerts (budget_id, period_start, threshold, spend_usd, tokens)
                SELECT id, $3, $4, $5, $6 FROM budget
                ON CONFLICT DO NOTHING
            )
            SELECT count(*) FROM budget
            """,
            account_id,
            budget_id,
            start,
            threshold,
            Decimal(repr(spend)).quantize(_STORED_PRECISION),
            tokens,
        )
        return bool(inserted)

    async def alerts(self, account_id: str, since: dt.datetime) -> dict[tuple[str, dt.datetime, str], dt.datetime]:
        """(budget id, period start, threshold) -> when it was crossed, for periods that started since `since`."""
        rows = await self._pool.fetch(
            """
            SELECT a.budget_id::text, a.period_start, a.threshold, a.crossed_at
            FROM budget_alerts a JOIN budgets b ON b.id = a.budget_id
            WHERE b.account_id = $1::uuid AND a.period_start >= $2
            """,
            account_id,
            since,
        )
        return {(r["budget_id"], r["period_start"], r["threshold"]): r["crossed_at"] for r in rows}


def budget_message(row: asyncpg.Record | dict[str, Any]) -> accounting_pb2.BudgetDefinition:
    """A stored budget, without its use."""
    message = accounting_pb2.BudgetDefinition(
        id=row["id"],
        account_id=row["account_id"],
        api_key_id=row["api_key_id"],
        period=row["period"],
        max_spend_usd=row["max_spend_usd"],
        max_tokens=row["max_tokens"],
        soft_percent=row["soft_percent"],
    )
    message.created_at.FromDatetime(row["created_at"])
    message.updated_at.FromDatetime(row["updated_at"])
    return message


async def budgets_with_use(
    repo: BudgetRepository, account_id: str, now: dt.datetime
) -> list[accounting_pb2.BudgetDefinition]:
    """The account's budgets, each with its current period, the ledger's use of it and its crossings."""
    rows = await repo.of_account(account_id)
    if not rows:
        return []
    alerts = await repo.alerts(account_id, now - dt.timedelta(days=32))
    uses: dict[tuple[str, dt.datetime], tuple[float, int]] = {}
    budgets = []
    for row in rows:
        message = budget_message(row)
        start = period_start(message.period, now)
        scope = (message.api_key_id, start)
        if scope not in uses:
            uses[scope] = await repo.use(account_id, message.api_key_id or None, start)
        message.spend_usd, message.tokens = uses[scope]
        message.period_start.FromDatetime(start)
        message.resets_at.FromDatetime(period_end(message.period, now))
        for threshold, field in (("soft", message.soft_crossed_at), ("hard", message.hard_crossed_at)):
            crossed = alerts.get((message.id, start, threshold))
            if crossed is not None:
                field.FromDatetime(crossed)
        budgets.append(message)
    return budgets


def timestamp_datetime(value: Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.UTC)
