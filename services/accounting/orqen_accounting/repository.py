"""SQL of the accounting schema; every query is scoped by account where it reads tenant data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from orqen_accounting.ledger_record import REQUEST_COLUMNS
from orqen_accounting.pagination import decode_cursor, encode_cursor
from orqen_common.auth import display_prefix, generate_api_key, hash_api_key
from orqen_common.response_cache import DEFAULT_CACHE_TTL_SECONDS


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


class UnknownAccountError(Exception):
    """A write named an account that does not exist."""


@dataclass(frozen=True, slots=True)
class SealedCredentialFields:
    """A provider credential as stored: what may be shown, and the secret sealed by dispatch."""

    provider: str
    auth: str
    last4: str
    base_url: str
    region: str
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Preferences:
    """An account's routing preferences (see RoutingPreferences in accounting.proto)."""

    mode: str
    k_floor: int
    k_cap: int
    ab_control_share: float
    fallback_models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """An account's response cache settings (see CacheSettings in accounting.proto)."""

    enabled: bool
    ttl_seconds: int


# What an account that never saved cache settings gets: off, answers kept an hour when asked for.
DEFAULT_CACHE_SETTINGS = CacheSettings(enabled=False, ttl_seconds=DEFAULT_CACHE_TTL_SECONDS)

# What an account that never saved preferences gets.
DEFAULT_PREFERENCES = Preferences(mode="auto", k_floor=3, k_cap=0, ab_control_share=0.05, fallback_models=())


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Which requests a listing shows; every field is optional."""

    model: str = ""  # the model requested or the one that answered
    status: str = ""  # "success" (< 400), "error" (>= 400) or one HTTP status code
    session_id: str = ""
    ingress: str = ""  # the SDK shape the caller used: "openai", "anthropic", "bedrock", "proxy/..."
    since: dt.datetime | None = None  # created_at >= since
    until: dt.datetime | None = None  # created_at < until


_KEY_INFO = "id::text, name, prefix, created_at, last_used_at, revoked_at, allowed_models, rpm, tpm"
_CREDENTIAL_INFO = "id::text, account_id::text, provider, auth, last4, base_url, region, created_at, updated_at"
_PREFERENCES = "mode, k_floor, k_cap, ab_control_share, fallback_models"


class AccountingRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The schema's pool, for the repositories of other tables (owners)."""
        return self._pool

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

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        return rows

    async def account_exists(self, account_id: str) -> bool:
        return bool(await self._pool.fetchval("SELECT true FROM accounts WHERE id = $1::uuid", account_id))

    async def list_keys(self, account_id: str) -> list[asyncpg.Record]:
        """The account's keys, newest first, without their hashes."""
        return await self._fetch(
            f"SELECT {_KEY_INFO} FROM api_keys WHERE account_id = $1::uuid ORDER BY created_at DESC, id DESC",
            account_id,
        )

    async def revoke_key(self, account_id: str, api_key_id: str) -> asyncpg.Record | None:
        """Revoke a key of the account (a second revocation keeps the first time); None if it has no such key.

        The row carries `key_hash` too, so the caller can drop the key's auth cache entry.
        """
        return await self._pool.fetchrow(
            f"""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE id = $2::uuid AND account_id = $1::uuid
            RETURNING {_KEY_INFO}, key_hash
            """,
            account_id,
            api_key_id,
        )

    async def put_credential(self, account_id: str, credential: SealedCredentialFields) -> asyncpg.Record:
        """Store the account's credential for the provider, replacing the one saved before (same id)."""
        try:
            row = await self._pool.fetchrow(
                f"""
                INSERT INTO provider_credentials
                    (account_id, provider, auth, last4, base_url, region, key_id, nonce, ciphertext)
                VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (account_id, provider) DO UPDATE SET
                    auth = EXCLUDED.auth, last4 = EXCLUDED.last4, base_url = EXCLUDED.base_url,
                    region = EXCLUDED.region, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                    ciphertext = EXCLUDED.ciphertext, updated_at = now()
                RETURNING {_CREDENTIAL_INFO}
                """,
                account_id,
                credential.provider,
                credential.auth,
                credential.last4,
                credential.base_url,
                credential.region,
                credential.key_id,
                credential.nonce,
                credential.ciphertext,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAccountError(account_id) from None
        assert row is not None
        return row

    async def list_credentials(self, account_id: str) -> list[asyncpg.Record]:
        """What may be shown about the account's credentials (no sealed secret), by provider."""
        return await self._fetch(
            f"SELECT {_CREDENTIAL_INFO} FROM provider_credentials WHERE account_id = $1::uuid ORDER BY provider",
            account_id,
        )

    async def sealed_credentials(self, account_id: str) -> list[asyncpg.Record]:
        """The account's credentials with their sealed secrets (key_id, nonce, ciphertext), by provider."""
        return await self._fetch(
            f"""
            SELECT {_CREDENTIAL_INFO}, key_id, nonce, ciphertext FROM provider_credentials
            WHERE account_id = $1::uuid ORDER BY provider
            """,
            account_id,
        )

    async def delete_credential(self, account_id: str, credential_id: str) -> bool:
        """Delete a credential of the account; False when the account has no such credential."""
        deleted = await self._pool.fetchval(
            "DELETE FROM provider_credentials WHERE id = $2::uuid AND account_id = $1::uuid RETURNING true",
            account_id,
            credential_id,
        )
        return bool(deleted)

    async def routing_preferences(self, account_id: str) -> Preferences | None:
        """The preferences the account saved, or None when it never did."""
        row = await self._pool.fetchrow(
            f"SELECT {_PREFERENCES} FROM routing_preferences WHERE account_id = $1::uuid", account_id
        )
        return None if row is None else _preferences(row)

    async def put_routing_preferences(self, account_id: str, preferences: Preferences) -> Preferences:
        try:
            row = await self._pool.fetchrow(
                f"""
                INSERT INTO routing_preferences (account_id, {_PREFERENCES})
                VALUES ($1::uuid, $2, $3, $4, $5, $6::text[])
                ON CONFLICT (account_id) DO UPDATE SET
                    mode = EXCLUDED.mode, k_floor = EXCLUDED.k_floor, k_cap = EXCLUDED.k_cap,
                    ab_control_share = EXCLUDED.ab_control_share, fallback_models = EXCLUDED.fallback_models,
                    updated_at = now()
                RETURNING {_PREFERENCES}
                """,
                account_id,
                preferences.mode,
                preferences.k_floor,
                preferences.k_cap,
                preferences.ab_control_share,
                list(preferences.fallback_models),
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAccountError(account_id) from None
        assert row is not None
        return _preferences(row)

    async def cache_settings(self, account_id: str) -> CacheSettings | None:
        """The cache settings the account saved, or None when it never did."""
        row = await self._pool.fetchrow(
            "SELECT enabled, ttl_seconds FROM cache_settings WHERE account_id = $1::uuid", account_id
        )
        return None if row is None else CacheSettings(row["enabled"], row["ttl_seconds"])

    async def put_cache_settings(self, account_id: str, settings: CacheSettings) -> CacheSettings:
        try:
            row = await self._pool.fetchrow(
                """
                INSERT INTO cache_settings (account_id, enabled, ttl_seconds) VALUES ($1::uuid, $2, $3)
                ON CONFLICT (account_id) DO UPDATE SET
                    enabled = EXCLUDED.enabled, ttl_seconds = EXCLUDED.ttl_seconds, updated_at = now()
                RETURNING enabled, ttl_seconds
                """,
                account_id,
                settings.enabled,
                settings.ttl_seconds,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAccountError(account_id) from None
        assert row is not None
        return CacheSettings(row["enabled"], row["ttl_seconds"])

    async def model_toggles(self, account_id: str) -> list[asyncpg.Record]:
        """The models the account switched off or on (model, enabled), by model."""
        return await self._fetch(
            "SELECT model, enabled FROM model_toggles WHERE account_id = $1::uuid ORDER BY model", account_id
        )

    async def set_model_toggle(self, account_id: str, model: str, enabled: bool) -> list[asyncpg.Record]:
        """Switch a model off or on for the account; returns all of its toggles afterwards."""
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    """
                    INSERT INTO model_toggles (account_id, model, enabled) VALUES ($1::uuid, $2, $3)
                    ON CONFLICT (account_id, model) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()
                    """,
                    account_id,
                    model,
                    enabled,
                )
            except asyncpg.ForeignKeyViolationError:
                raise UnknownAccountError(account_id) from None
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT model, enabled FROM model_toggles WHERE account_id = $1::uuid ORDER BY model", account_id
            )
            return rows

    async def model_deployments(self, account_id: str) -> list[asyncpg.Record]:
        """The account's load-balanced models (model, strategy, deployments as jsonb text), by model."""
        return await self._fetch(
            "SELECT model, strategy, deployments::text AS deployments FROM model_deployments "
            "WHERE account_id = $1::uuid ORDER BY model",
            account_id,
        )

    async def put_model_deployments(self, account_id: str, model: str, strategy: str, deployments: str) -> None:
        """Save (or replace) one balanced model; `deployments` is its jsonb list as text."""
        try:
            await self._pool.execute(
                """
                INSERT INTO model_deployments (account_id, model, strategy, deployments)
                VALUES ($1::uuid, $2, $3, $4::jsonb)
                ON CONFLICT (account_id, model) DO UPDATE
                SET strategy = EXCLUDED.strategy, deployments = EXCLUDED.deployments, updated_at = now()
                """,
                account_id,
                model,
                strategy,
                deployments,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownAccountError(account_id) from None

    async def delete_model_deployments(self, account_id: str, model: str) -> bool:
        """Remove one balanced model; False when the account has none of that name."""
        deleted = await self._pool.fetchval(
            "DELETE FROM model_deployments WHERE account_id = $1::uuid AND model = $2 RETURNING true",
            account_id,
            model,
        )
        return bool(deleted)

    async def list_requests(
        self, account_id: str, limit: int, cursor: str, where: RequestFilter | None = None
    ) -> tuple[list[asyncpg.Record], str]:
        """A page of the account's requests that pass `where`, newest first, and the cursor of the next page."""
        where = where or RequestFilter()
        args: list[Any] = [account_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        conditions = ["account_id = $1::uuid"]
        if where.model:
            placeholder = arg(where.model)
            conditions.append(f"(model_used = {placeholder} OR model_requested = {placeholder})")
        if where.status == "success":
            conditions.append("status < 400")
        elif where.status == "error":
            conditions.append("status >= 400")
        elif where.status:
            conditions.append(f"status = {arg(int(where.status))}")
        if where.session_id:
            conditions.append(f"session_id = {arg(where.session_id)}")
        if where.ingress:
            conditions.append(f"ingress = {arg(where.ingress)}")
        if where.since is not None:
            conditions.append(f"created_at >= {arg(where.since)}")
        if where.until is not None:
            conditions.append(f"created_at < {arg(where.until)}")
        if cursor:
            after = decode_cursor(cursor)
            conditions.append(f"(created_at, request_id) < ({arg(after[0])}, {arg(after[1])})")
        rows = await self._fetch(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE {' AND '.join(conditions)} "
            f"ORDER BY created_at DESC, request_id DESC LIMIT {arg(limit + 1)}",
            *args,
        )
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["request_id"]) if more else ""
        return page, next_cursor

    async def get_request(self, account_id: str, request_id: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE account_id = $1::uuid AND request_id = $2",
            account_id,
            request_id,
        )


def _preferences(row: asyncpg.Record) -> Preferences:
    return Preferences(
        mode=row["mode"],
        k_floor=row["k_floor"],
        k_cap=row["k_cap"],
        ab_control_share=row["ab_control_share"],
        fallback_models=tuple(row["fallback_models"]),
    )
