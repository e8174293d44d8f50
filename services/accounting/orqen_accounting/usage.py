"""The read side of the ledger: usage, analytics, sessions and tool health from the rollups.

Every query here reads the daily rollups (or the sessions table) of one account over a
bounded range of days, so its cost does not grow with the number of requests logged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import usage_pb2
from orqen_accounting import histogram
from orqen_accounting.pagination import decode_cursor, encode_cursor

_MONEY = ("cost_usd", "savings_usd", "cache_saved_usd")


def _sums(**named: str) -> str:
    """`name=expression` as `coalesce(sum(expression), 0) AS name`: counts as bigint, money as float8."""
    return ", ".join(
        f"coalesce(sum({expression}), 0)::{'float8' if name in _MONEY else 'bigint'} AS {name}"
        for name, expression in named.items()
    )


def _same(*columns: str) -> dict[str, str]:
    return {column: column for column in columns}


_TOTALS = _sums(
    **_same(
        "requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "tokens_saved", "cache_hits",
        *_MONEY, "unpriced_requests", "unpriced_tokens",
    )
)  # fmt: skip
_SAVINGS = _sums(
    requests="requests",
    tool_tokens_saved="tool_tokens_in - tool_tokens_out",
    ctx_tokens_saved="ctx_tokens_in - ctx_tokens_out",
    **_same("tokens_saved", "cache_hits", *_MONEY, "unpriced_requests"),
)
_OPTIMIZATION = _sums(
    requests="requests",
    optimized_requests="optimized",
    **_same(
        "tools_input", "tools_output", "tool_tokens_in", "tool_tokens_out", "ctx_tokens_in", "ctx_tokens_out",
        "tokens_saved",
    ),
    savings_usd="savings_usd - cache_saved_usd",  # the optimizer's own
)  # fmt: skip
_PERIOD = "account_id = $1::uuid AND day >= $2 AND day <= $3"


def _totals(row: asyncpg.Record) -> usage_pb2.UsageTotals:
    return usage_pb2.UsageTotals(**{f: row[f] for f in usage_pb2.UsageTotals.DESCRIPTOR.fields_by_name})


def _percentiles(counts: Sequence[int], total_ms: float, requests: int) -> usage_pb2.LatencyPercentiles:
    return usage_pb2.LatencyPercentiles(
        p50_ms=histogram.percentile(counts, 0.50),
        p95_ms=histogram.percentile(counts, 0.95),
        p99_ms=histogram.percentile(counts, 0.99),
        mean_ms=total_ms / requests if requests else 0.0,
    )


def period(days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of the last `days` days, today included."""
    return today - dt.timedelta(days=days - 1), today


class UsageStats:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        return rows

    async def summary(self, account_id: str, today: dt.date) -> usage_pb2.UsageSummary:
        """The current calendar month (UTC) up to today, in total and by provider."""
        start = today.replace(day=1)
        rows = await self._fetch(
            f"SELECT provider, {_TOTALS} FROM usage_daily WHERE {_PERIOD} GROUP BY provider ORDER BY provider",
            account_id,
            start,
            today,
        )
        total = await self._pool.fetchrow(
            f"SELECT {_TOTALS} FROM usage_daily WHERE {_PERIOD}", account_id, start, today
        )
        assert total is not None
        return usage_pb2.UsageSummary(
            period_start=start.isoformat(),
            period_end=today.isoformat(),
            totals=_totals(total),
            providers=[usage_pb2.ProviderUsage(provider=r["provider"], totals=_totals(r)) for r in rows],
        )

    async def daily(self, account_id: str, days: int, today: dt.date) -> usage_pb2.UsageDaily:
        """Each day of the period, oldest first, days without traffic as zeros."""
        start, end = period(days, today)
        rows = await self._fetch(
            f"SELECT day, {_TOTALS} FROM usage_daily WHERE {_PERIOD} GROUP BY day", account_id, start, end
        )
        by_day = {r["day"]: _totals(r) for r in rows}
        return usage_pb2.UsageDaily(
            days=days,
            data=[
                usage_pb2.DailyUsage(date=day.isoformat(), totals=by_day.get(day, usage_pb2.UsageTotals()))
                for day in _days(start, end)
            ],
        )

    async def analytics_daily(self, account_id: str, days: int, today: dt.date) -> usage_pb2.AnalyticsDaily:
        """Success rate and latency percentiles of each day of the period, oldest first."""
        start, end = period(days, today)
        args = (account_id, start, end)
        rows = await self._fetch(
            f"""
            SELECT day, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
                   sum(latency_ms_sum) AS latency_ms
            FROM usage_daily WHERE {_PERIOD} GROUP BY day
            """,
            *args,
        )
        buckets: dict[dt.date, list[tuple[int, int]]] = {}
        for b in await self._fetch(
            f"SELECT day, bucket, sum(requests)::bigint AS n FROM latency_daily WHERE {_PERIOD} GROUP BY day, bucket",
            *args,
        ):
            buckets.setdefault(b["day"], []).append((b["bucket"], b["n"]))
        by_day = {r["day"]: r for r in rows}
        data = []
        for day in _days(start, end):
            row = by_day.get(day)
            if row is None:
                data.append(usage_pb2.DailyAnalytics(date=day.isoformat(), latency=usage_pb2.LatencyPercentiles()))
                continue
            data.append(
                usage_pb2.DailyAnalytics(
                    date=day.isoformat(),
                    requests=row["requests"],
                    errors=row["errors"],
                    success_rate=(row["requests"] - row["errors"]) / row["requests"],
                    latency=_percentiles(histogram.counts(buckets.get(day, [])), row["latency_ms"], row["requests"]),
                )
            )
        return usage_pb2.AnalyticsDaily(days=days, data=data)

    async def savings(self, account_id: str, days: int, today: dt.date) -> usage_pb2.SavingsBreakdown:
        """Tokens and money saved in the period, by model and by provider, most saved first."""
        start, end = period(days, today)
        args = (account_id, start, end)
        total = await self._pool.fetchrow(f"SELECT {_TOTALS} FROM usage_daily WHERE {_PERIOD}", *args)
        assert total is not None
        order = "ORDER BY tokens_saved DESC, requests DESC"
        models = await self._fetch(
            f"SELECT model, provider, {_SAVINGS} FROM usage_daily WHERE {_PERIOD} GROUP BY model, provider {order}",
            *args,
        )
        providers = await self._fetch(
            f"SELECT '' AS model, provider, {_SAVINGS} FROM usage_daily WHERE {_PERIOD} GROUP BY provider {order}",
            *args,
        )
        return usage_pb2.SavingsBreakdown(
            days=days,
            totals=_totals(total),
            models=[_model_savings(r) for r in models],
            providers=[_model_savings(r) for r in providers],
        )

    async def latency(self, account_id: str, days: int, today: dt.date) -> usage_pb2.LatencySummary:
        """Overall latency percentiles of the period, and where the time went on average."""
        start, end = period(days, today)
        row = await self._pool.fetchrow(
            f"""
            SELECT coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(latency_ms_sum), 0) AS latency_ms,
                   coalesce(sum(upstream_ms_sum), 0) AS upstream_ms, coalesce(sum(gateway_ms_sum), 0) AS gateway_ms,
                   coalesce(sum(ttft_ms_sum), 0) AS ttft_ms, coalesce(sum(streamed), 0)::bigint AS streamed
            FROM usage_daily WHERE {_PERIOD}
            """,
            account_id,
            start,
            end,
        )
        assert row is not None
        buckets = await self._fetch(
            f"SELECT bucket, sum(requests)::bigint AS n FROM latency_daily WHERE {_PERIOD} GROUP BY bucket",
            account_id,
            start,
            end,
        )
        requests = row["requests"]
        return usage_pb2.LatencySummary(
            days=days,
            requests=requests,
            latency=_percentiles(histogram.counts((b["bucket"], b["n"]) for b in buckets), row["latency_ms"], requests),
            mean_upstream_ms=row["upstream_ms"] / requests if requests else 0.0,
            mean_gateway_ms=row["gateway_ms"] / requests if requests else 0.0,
            mean_ttft_ms=row["ttft_ms"] / row["streamed"] if row["streamed"] else 0.0,
        )

    async def optimization(self, account_id: str, days: int, today: dt.date) -> usage_pb2.OptimizationStats:
        """What the optimizer did in the period: tools pruned, context compressed, tokens and money saved."""
        start, end = period(days, today)
        args = (account_id, start, end)
        row = await self._pool.fetchrow(
            f"""
            SELECT {_OPTIMIZATION}
            FROM usage_daily WHERE {_PERIOD}
            """,
            *args,
        )
        assert row is not None
        modes = await self._fetch(
            f"""
            SELECT routing, sum(requests)::bigint AS requests FROM usage_daily
            WHERE {_PERIOD} AND routing <> '' GROUP BY routing ORDER BY requests DESC, routing
            """,
            *args,
        )
        return usage_pb2.OptimizationStats(
            days=days,
            **dict(row),
            forwarded_share=row["tools_output"] / row["tools_input"] if row["tools_input"] else 1.0,
            routing_modes=[usage_pb2.RoutingModeCount(mode=m["routing"], requests=m["requests"]) for m in modes],
        )

    async def tool_health(self, account_id: str, days: int, limit: int, today: dt.date) -> usage_pb2.ToolHealth:
        """Per tool: how often it was offered, forwarded, called, failed, and called unforwarded."""
        start, end = period(days, today)
        rows = await self._fetch(
            f"""
            SELECT tool AS name, sum(offered)::bigint AS offered, sum(forwarded)::bigint AS forwarded,
                   sum(called)::bigint AS called, sum(errors)::bigint AS errors,
                   sum(called_not_forwarded)::bigint AS called_not_forwarded
            FROM tool_usage_daily WHERE {_PERIOD}
            GROUP BY tool ORDER BY offered DESC, called DESC, tool LIMIT $4
            """,
            account_id,
            start,
            end,
            limit,
        )
        return usage_pb2.ToolHealth(days=days, tools=[usage_pb2.ToolStats(**dict(r)) for r in rows])

    async def sessions(self, account_id: str, limit: int, cursor: str) -> tuple[list[usage_pb2.Session], str]:
        """A page of the account's sessions, most recently active first, and the next page's cursor."""
        if cursor:
            last_at, session_id = decode_cursor(cursor)
            rows = await self._fetch(
                f"SELECT {_SESSION} FROM sessions WHERE account_id = $1::uuid AND (last_at, session_id) < ($2, $3) "
                "ORDER BY last_at DESC, session_id DESC LIMIT $4",
                account_id,
                last_at,
                session_id,
                limit + 1,
            )
        else:
            rows = await self._fetch(
                f"SELECT {_SESSION} FROM sessions WHERE account_id = $1::uuid "
                "ORDER BY last_at DESC, session_id DESC LIMIT $2",
                account_id,
                limit + 1,
            )
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1]["last_at"], page[-1]["session_id"]) if len(rows) > limit else ""
        return [_session(r) for r in page], next_cursor

    async def session(self, account_id: str, session_id: str) -> usage_pb2.Session | None:
        row = await self._pool.fetchrow(
            f"SELECT {_SESSION} FROM sessions WHERE account_id = $1::uuid AND session_id = $2", account_id, session_id
        )
        return None if row is None else _session(row)


_SESSION = (
    "session_id, first_at, last_at, requests, errors, input_tokens, output_tokens, tokens_saved, "
    "cost_usd::float8 AS cost_usd, savings_usd::float8 AS savings_usd, last_model, unpriced_requests"
)


def _session(row: asyncpg.Record) -> usage_pb2.Session:
    fields = dict(row)
    first_at, last_at = Timestamp(), Timestamp()
    first_at.FromDatetime(fields.pop("first_at"))
    last_at.FromDatetime(fields.pop("last_at"))
    return usage_pb2.Session(**fields, first_at=first_at, last_at=last_at)


def _model_savings(row: asyncpg.Record) -> usage_pb2.ModelSavings:
    return usage_pb2.ModelSavings(**dict(row))


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
