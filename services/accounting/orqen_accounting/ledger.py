"""The write side of the request log: a batch of entries stored once, and counted once.

One transaction per batch: the rows are COPYed into a session-local staging table, moved
into `requests` with ON CONFLICT (request_id) DO NOTHING, and only the rows that insert
returns (the new ones) feed the rollups. A redelivered event therefore changes nothing,
whether it arrives in the same batch, a later one, or after a crash between commit and ack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, fields
from typing import TYPE_CHECKING, Any

import asyncpg

from orqen_accounting.repository import REQUEST_COLUMNS
from orqen_accounting.rollups import Rollups, SessionRow, ToolRow, UsageRow

if TYPE_CHECKING:
    from orqen_accounting.ingest import LedgerEntry

_COLUMNS = ", ".join(REQUEST_COLUMNS)
# Session-local, emptied at every commit; created once per pooled connection.
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS requests_incoming (LIKE requests) ON COMMIT DELETE ROWS"
_MOVE = (
    f"INSERT INTO requests ({_COLUMNS}) SELECT {_COLUMNS} FROM requests_incoming "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)

# Postgres types of the rollup columns, for the unnest() parameters of the upserts.
_TYPES = {int: "bigint", float: "float8", str: "text"}


def _pg_type(name: str, value: Any) -> str:
    if name in ("cost_usd", "savings_usd"):
        return "numeric"
    if name.endswith("_at"):
        return "timestamptz"
    if name == "latency_histogram":
        return "text"  # each histogram travels as an array literal, cast back below
    return _TYPES[type(value)]


def _upsert(table: str, keys: Sequence[tuple[str, str]], sample: Any, merge: dict[str, str]) -> str:
    """INSERT ... SELECT FROM unnest($1, $2, ...) ON CONFLICT DO UPDATE: one statement per rollup table.

    `keys` are (column, type); value columns are added to what is stored unless `merge` says otherwise.
    """
    values = [(f.name, _pg_type(f.name, getattr(sample, f.name))) for f in fields(sample)]
    columns = [*keys, *values]
    params = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, 1))
    names = ", ".join(name for name, _ in columns)
    select = ", ".join(f"{name}::bigint[]" if name == "latency_histogram" else name for name, _ in columns)
    updates = ", ".join(
        f"{name} = " + merge.get(name, f"{table}.{name} + EXCLUDED.{name}").format(table=table, name=name)
        for name, _ in values
    )
    return (
        f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({params}) AS t({names}) "
        f"ON CONFLICT ({', '.join(k for k, _ in keys)}) DO UPDATE SET {updates}"
    )


_USAGE_UPSERT = _upsert(
    "usage_daily",
    [("account_id", "uuid"), ("day", "date"), ("provider", "text"), ("model", "text"), ("routing", "text")],
    UsageRow(),
    {"latency_histogram": "add_histograms({table}.{name}, EXCLUDED.{name})"},
)
_SESSION_UPSERT = _upsert(
    "sessions",
    [("account_id", "uuid"), ("session_id", "text")],
    SessionRow(first_at=None, last_at=None, last_model=""),  # type: ignore[arg-type]
    {
        "first_at": "least({table}.{name}, EXCLUDED.{name})",
        "last_at": "greatest({table}.{name}, EXCLUDED.{name})",
        "last_model": "CASE WHEN EXCLUDED.last_at >= {table}.last_at THEN EXCLUDED.{name} ELSE {table}.{name} END",
    },
)
_TOOL_UPSERT = _upsert("tool_usage_daily", [("account_id", "uuid"), ("day", "date"), ("tool", "text")], ToolRow(), {})


def _histogram_literal(counts: list[int]) -> str:
    return "{" + ",".join(map(str, counts)) + "}"


def _columns(rows: dict[Any, Any]) -> list[list[Any]]:
    """The rows (key -> dataclass), sorted by key so concurrent writers lock in one order, as columns."""
    flat = []
    for key in sorted(rows):
        values = [_histogram_literal(v) if isinstance(v, list) else v for v in astuple(rows[key])]
        flat.append([*key, *values])
    return [list(column) for column in zip(*flat, strict=True)]


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, entries: Sequence[LedgerEntry]) -> int:
        """Store the entries whose request id is new and count them in the rollups; returns how many were new.

        Entries must have distinct request ids (RequestIngest keeps the last of a batch's duplicates).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            await conn.copy_records_to_table(
                "requests_incoming", records=[e.row for e in entries], columns=REQUEST_COLUMNS
            )
            inserted = {r["request_id"] for r in await conn.fetch(_MOVE)}
            rollups = Rollups.of(e for e in entries if e.request_id in inserted)
            for sql, rows in (
                (_USAGE_UPSERT, rollups.usage),
                (_SESSION_UPSERT, rollups.sessions),
                (_TOOL_UPSERT, rollups.tools),
            ):
                if rows:
                    await conn.execute(sql, *_columns(rows))
            return len(inserted)
