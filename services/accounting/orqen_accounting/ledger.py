"""The write side of the request log: a batch of rows stored once, and counted once.

One statement per batch, in one transaction: the rows are COPYed into a session-local staging
table, moved into `requests` with ON CONFLICT (request_id) DO NOTHING, and only the rows that
insert returns (the new ones) are added to the daily rollups, the latency histograms, the
sessions and the tool counts, aggregated by Postgres. A redelivered event therefore changes
nothing, whether it arrives in the same batch, a later one, or after a crash between commit
and ack. Rows are written in key order, so concurrent replicas lock them in one order.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from orqen_accounting import histogram
from orqen_accounting.ledger_record import REQUEST_COLUMNS, STAGED_COLUMNS, LedgerRow

_COLUMNS = ", ".join(REQUEST_COLUMNS)
# Session-local, emptied at every commit; created once per pooled connection. The columns after
# `requests`' own are LedgerRecord's staged ones.
_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS requests_incoming (LIKE requests, tools_offered text[], tools_forwarded text[])
    ON COMMIT DELETE ROWS
"""
_GROUP = "account_id, day, provider, model, routing"
_SUMS = (
    "input_tokens", "output_tokens", "cached_input_tokens", "tools_input", "tools_output", "tool_tokens_in",
    "tool_tokens_out", "ctx_tokens_in", "ctx_tokens_out", "tokens_saved", "cache_saved_usd",
)  # fmt: skip
# Requests of unknown price have NULL money: sums leave them out, and count them apart.
_MONEY = {column: f"coalesce(sum({column}), 0)" for column in ("cost_usd", "savings_usd")}
_UNPRICED = "count(*) FILTER (WHERE price_unknown)"
_USAGE_VALUES = {
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE failed)",
    "optimized": "count(*) FILTER (WHERE routing <> '' OR ctx_tokens_in > 0)",
    "cache_hits": "count(*) FILTER (WHERE cache = 'hit')",
    **{column: f"sum({column})" for column in _SUMS},
    **_MONEY,
    "unpriced_requests": _UNPRICED,
    "unpriced_tokens": "coalesce(sum(input_tokens + output_tokens) FILTER (WHERE price_unknown), 0)",
    "latency_ms_sum": "sum(latency_ms)",
    "upstream_ms_sum": "sum(upstream_ms)",
    "gateway_ms_sum": "sum(gateway_ms)",
    "ttft_ms_sum": "coalesce(sum(ttft_ms) FILTER (WHERE stream AND ttft_ms > 0), 0)",
    "streamed": "count(*) FILTER (WHERE stream AND ttft_ms > 0)",
}
_SESSION_VALUES = {
    "first_at": "min(created_at)",
    "last_at": "max(created_at)",
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE failed)",
    **{column: f"sum({column})" for column in ("input_tokens", "output_tokens", "tokens_saved")},
    **_MONEY,
    "unpriced_requests": _UNPRICED,
    "last_model": "(array_agg(model ORDER BY created_at DESC))[1]",
}
_SESSION_MERGE = {
    "first_at": "least(sessions.first_at, EXCLUDED.first_at)",
    "last_at": "greatest(sessions.last_at, EXCLUDED.last_at)",
    "last_model": (
        "CASE WHEN EXCLUDED.last_at >= sessions.last_at THEN EXCLUDED.last_model ELSE sessions.last_model END"
    ),
}
_TOOL_VALUES = {
    "offered": "count(*) FILTER (WHERE offered)",
    "forwarded": "count(*) FILTER (WHERE forwarded)",
    "called": "count(*) FILTER (WHERE called)",
    "errors": "count(*) FILTER (WHERE offered AND failed)",
    "called_not_forwarded": "count(*) FILTER (WHERE called AND NOT forwarded)",
}


def _upsert(table: str, keys: str, values: dict[str, str], source: str, merge: dict[str, str] | None = None) -> str:
    """INSERT the grouped `source` into `table`; on a key already there, add to it (or `merge`)."""
    updates = ", ".join(
        f"{column} = " + (merge or {}).get(column, f"{table}.{column} + EXCLUDED.{column}") for column in values
    )
    return f"""
        INSERT INTO {table} ({keys}, {", ".join(values)})
        SELECT {keys}, {", ".join(values.values())} FROM {source} GROUP BY {keys} ORDER BY {keys}
        ON CONFLICT ({keys}) DO UPDATE SET {updates}
    """


_USAGE = _upsert("usage_daily", _GROUP, _USAGE_VALUES, "counted")
_LATENCY = _upsert("latency_daily", _GROUP + ", bucket", {"requests": "count(*)"}, "counted")
_SESSIONS = _upsert(
    "sessions", "account_id, session_id", _SESSION_VALUES, "counted WHERE session_id <> ''", _SESSION_MERGE
)
_TOOLS = _upsert("tool_usage_daily", "account_id, day, tool", _TOOL_VALUES, "per_tool")
_RECORD = f"""
    WITH new AS (
        INSERT INTO requests ({_COLUMNS}) SELECT {_COLUMNS} FROM requests_incoming ORDER BY request_id
        ON CONFLICT (request_id) DO NOTHING RETURNING request_id
    ), counted AS (
        SELECT i.*, (i.created_at AT TIME ZONE 'UTC')::date AS day, i.status >= 400 AS failed,
               coalesce(nullif(i.model_used, ''), i.model_requested) AS model,
               {histogram.sql_bucket("i.latency_ms")} AS bucket
        FROM requests_incoming i JOIN new USING (request_id)
    ), per_tool AS (
        SELECT c.account_id, c.day, c.failed, t.tool,
               t.tool = ANY(c.tools_offered) AS offered, t.tool = ANY(c.tools_forwarded) AS forwarded,
               t.tool = ANY(c.tools_called) AS called
        FROM counted c, LATERAL (SELECT DISTINCT unnest(c.tools_offered || c.tools_called) AS tool) t
    ), usage AS ({_USAGE}
    ), latency AS ({_LATENCY}
    ), session AS ({_SESSIONS}
    ), tool AS ({_TOOLS}
    )
    SELECT request_id FROM new
"""


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, rows: Sequence[LedgerRow]) -> int:
        """Store the rows whose request id is new and count them in the rollups; returns how many were new.

        Rows must have distinct request ids (RequestIngest keeps the last of a batch's duplicates).
        """
        return len(await self.record_new(rows))

    async def record_new(self, rows: Sequence[LedgerRow]) -> set[str]:
        """`record`, returning the request ids that were new: what a redelivery must not count again."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            await conn.copy_records_to_table("requests_incoming", records=rows, columns=STAGED_COLUMNS)
            return {row["request_id"] for row in await conn.fetch(_RECORD)}
