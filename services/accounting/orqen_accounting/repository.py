"""SQL of the accounting schema; every query is scoped by account where it reads tenant data."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from orqen_common.auth import display_prefix, generate_api_key, hash_api_key


@dataclass(frozen=True, slots=True)
class KeyOwner:
    account_id: str
    api_key_id: str
    account_name: str


@dataclass(frozen=True, slots=True)
class CreatedKey:
    api_key_id: str
    plaintext: str
    prefix: str


class KeyConflictError(Exception):
    """The given plaintext key already belongs to another account."""


REQUEST_COLUMNS = (
    "request_id", "account_id", "api_key_id", "session_id", "ingress", "model_requested",
    "model_used", "provider", "status", "error", "stream", "input_tokens", "output_tokens",
    "cached_input_tokens", "latency_ms", "upstream_ms", "ttft_ms", "tools_input",
    "tools_output", "routing", "created_at",
)  # fmt: skip

_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(REQUEST_COLUMNS) + 1))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


class AccountingRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def key_owner(self, key_hash: str) -> KeyOwner | None:
        row = await self._pool.fetchrow(
            """
            UPDATE api_keys k SET last_used_at = now()
            FROM accounts a
            WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND a.id = k.account_id
            RETURNING k.id::text AS key_id, a.id::text AS account_id, a.name
            """,
            key_hash,
        )
        if row is None:
            return None
        return KeyOwner(account_id=row["account_id"], api_key_id=row["key_id"], account_name=row["name"])

    async def ensure_account(self, name: str) -> asyncpg.Record:
        row = await self._pool.fetchrow(
            """
            INSERT INTO accounts (name) VALUES ($1)
            ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
            RETURNING id::text, name, created_at
            """,
            name,
        )
        assert row is not None
        return row

    async def create_key(self, account_id: str, name: str, plaintext: str | None) -> CreatedKey:
        """Store a new key (or the given one, idempotently) and return it with its plaintext."""
        key = plaintext or generate_api_key()
        row = await self._pool.fetchrow(
            """
            WITH ins AS (
                INSERT INTO api_keys (account_id, name, key_hash, prefix) VALUES ($1::uuid, $2, $3, $4)
                ON CONFLICT (key_hash) DO NOTHING
                RETURNING id, account_id
            )
            SELECT id::text, account_id::text FROM ins
            UNION ALL
            SELECT id::text, account_id::text FROM api_keys WHERE key_hash = $3
            LIMIT 1
            """,
            account_id,
            name,
            hash_api_key(key),
            display_prefix(key),
        )
        assert row is not None
        if row["account_id"] != account_id:
            raise KeyConflictError
        return CreatedKey(api_key_id=row["id"], plaintext=key, prefix=display_prefix(key))

    async def account_exists(self, account_id: str) -> bool:
        return bool(await self._pool.fetchval("SELECT true FROM accounts WHERE id = $1::uuid", account_id))

    async def insert_requests(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert request rows; a request id already stored is skipped (idempotent ingest)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT_REQUEST, rows)

    async def list_requests(self, account_id: str, limit: int, cursor: str) -> tuple[list[asyncpg.Record], str]:
        """A page of the account's requests, newest first, and the cursor of the next page."""
        after = _decode_cursor(cursor) if cursor else None
        cols = ", ".join(REQUEST_COLUMNS)
        if after is None:
            rows = await self._pool.fetch(
                f"SELECT {cols} FROM requests WHERE account_id = $1::uuid "
                "ORDER BY created_at DESC, request_id DESC LIMIT $2",
                account_id,
                limit + 1,
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {cols} FROM requests WHERE account_id = $1::uuid "
                "AND (created_at, request_id) < ($2, $3) "
                "ORDER BY created_at DESC, request_id DESC LIMIT $4",
                account_id,
                after[0],
                after[1],
                limit + 1,
            )
        page, more = rows[:limit], len(rows) > limit
        next_cursor = _encode_cursor(page[-1]["created_at"], page[-1]["request_id"]) if more else ""
        return page, next_cursor

    async def get_request(self, account_id: str, request_id: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE account_id = $1::uuid AND request_id = $2",
            account_id,
            request_id,
        )


def _encode_cursor(created_at: dt.datetime, request_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{request_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        stamp, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return dt.datetime.fromisoformat(stamp), request_id
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidCursorError(cursor) from err


class InvalidCursorError(ValueError):
    """A pagination cursor that this service did not issue."""
