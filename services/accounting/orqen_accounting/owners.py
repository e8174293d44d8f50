"""Dashboard owners: email + password, the password kept only as an argon2id hash.

Hashing is deliberately slow (that is its point), so it runs in a worker thread and
never blocks the event loop. An unknown email costs one hash too, against a fixed
dummy, so the time to answer does not reveal which emails exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from orqen_common.errors import invalid_request

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_EMAIL = 254
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is the mail system's job.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

# Long enough to reach a colleague by mail or chat, short enough that a forgotten link goes stale.
INVITE_TTL = dt.timedelta(hours=72)
INVITE_TOKEN_PREFIX = "inv-"
MAX_INVITE_TOKEN = 128

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory defaults
_DUMMY_HASH = _hasher.hash("orqen-dummy-password-for-unknown-emails")


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    account_id: str
    email: str
    account_name: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Invite:
    """A one-time sign-up link's token; only its hash is stored, so `token` exists only here."""

    id: str
    account_id: str
    token: str
    expires_at: dt.datetime


class EmailTakenError(Exception):
    """Another owner already uses this email."""


class LastOwnerError(Exception):
    """The owner is the account's last: removing it would lock everyone out of the dashboard."""


class WrongPasswordError(Exception):
    """The current password given does not match (or changed meanwhile)."""


class UnknownInviterError(Exception):
    """The inviting owner is not an owner of the account."""


def checked_email(email: str) -> str:
    """The email, trimmed and lower-cased; a 400 when it does not look like one."""
    normalized = email.strip().lower()
    if len(normalized) > MAX_EMAIL or not _EMAIL.fullmatch(normalized):
        raise invalid_request("'email' must be an email address.")
    return normalized


def checked_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise invalid_request(f"'password' must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long.")
    return password


_OWNER_COLUMNS = "o.id::text, o.account_id::text, o.email, a.name AS account_name, o.created_at"
# A new owner ($1 account, $2 email, $3 password hash), answered with its account's name.
_INSERT_OWNER = f"""
    WITH o AS (INSERT INTO owners (account_id, email, password_hash) VALUES ($1::uuid, $2, $3) RETURNING *)
    SELECT {_OWNER_COLUMNS} FROM o JOIN accounts a ON a.id = o.account_id
"""


class OwnerRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, account_id: str, email: str, password: str) -> Owner:
        """Store a new owner of `account_id`; EmailTakenError when the email is in use."""
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        try:
            row = await self._pool.fetchrow(
                _INSERT_OWNER,
                account_id,
                email,
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise EmailTakenError from None
        assert row is not None
        return _owner(row)

    async def of_account(self, account_id: str) -> list[Owner]:
        rows = await self._pool.fetch(
            f"SELECT {_OWNER_COLUMNS} FROM owners o JOIN accounts a ON a.id = o.account_id "
            "WHERE o.account_id = $1::uuid ORDER BY o.created_at, o.id",
            account_id,
        )
        return [_owner(r) for r in rows]

    async def create_invite(self, account_id: str, invited_by: str | None) -> Invite:
        """A new invitation to `account_id`; UnknownInviterError when `invited_by` is not one of its owners."""
        token = INVITE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = await self._pool.fetchrow(
            """
            INSERT INTO owner_invites (account_id, token_hash, invited_by, expires_at)
            SELECT $1::uuid, $2, $3::uuid, now() + $4::interval
            WHERE $3::uuid IS NULL OR EXISTS (SELECT 1 FROM owners WHERE id = $3::uuid AND account_id = $1::uuid)
            RETURNING id::text, expires_at
            """,
            account_id,
            _token_hash(token),
            invited_by,
            INVITE_TTL,
        )
        if row is None:
            raise UnknownInviterError
        return Invite(row["id"], account_id, token, row["expires_at"])

    async def accept_invite(self, token: str, email: str, password: str) -> Owner | None:
        """The new owner; None for an unknown, used or expired token. EmailTakenError leaves the invitation unused."""
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        async with self._pool.acquire() as conn, conn.transaction():
            # Marking the invitation used first makes a second concurrent use find nothing.
            account_id = await conn.fetchval(
                "UPDATE owner_invites SET used_at = now() "
                "WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING account_id::text",
                _token_hash(token),
            )
            if account_id is None:
                return None
            try:
                row = await conn.fetchrow(
                    _INSERT_OWNER,
                    account_id,
                    email,
                    password_hash,
                )
            except asyncpg.UniqueViolationError:
                raise EmailTakenError from None  # the transaction rolls back: the invitation is unused again
            assert row is not None
            await conn.execute(
                "UPDATE owner_invites SET used_by = $2::uuid WHERE token_hash = $1", _token_hash(token), row["id"]
            )
        return _owner(row)

    async def remove(self, account_id: str, owner_id: str) -> Owner | None:
        """The removed owner; None when the account has no such owner; LastOwnerError for its last one."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Owner removals of one account queue behind this row lock, so two concurrent removals
            # cannot each see the other's owner still there and leave the account with none.
            # NO KEY UPDATE: rows referencing the account (keys, requests) can still be written meanwhile.
            if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1::uuid FOR NO KEY UPDATE", account_id) is None:
                return None
            owners = await conn.fetchval("SELECT count(*) FROM owners WHERE account_id = $1::uuid", account_id)
            row = await conn.fetchrow(
                f"SELECT {_OWNER_COLUMNS} FROM owners o JOIN accounts a ON a.id = o.account_id "
                "WHERE o.id = $2::uuid AND o.account_id = $1::uuid",
                account_id,
                owner_id,
            )
            if row is None:
                return None
            if owners <= 1:
                raise LastOwnerError
            await conn.execute("DELETE FROM owners WHERE id = $1::uuid", owner_id)
        return _owner(row)

    async def change_password(self, account_id: str, owner_id: str, old: str, new: str) -> Owner | None:
        """The owner with its new password; None when the account has no such owner; WrongPasswordError."""
        row = await self._pool.fetchrow(
            f"SELECT {_OWNER_COLUMNS}, o.password_hash FROM owners o JOIN accounts a ON a.id = o.account_id "
            "WHERE o.id = $2::uuid AND o.account_id = $1::uuid",
            account_id,
            owner_id,
        )
        if row is None:
            return None
        if not await asyncio.to_thread(_matches, row["password_hash"], old):
            raise WrongPasswordError
        new_hash = await asyncio.to_thread(_hasher.hash, new)
        # Only over the hash just checked: a concurrent change wins, and this one is told the password is wrong.
        changed = await self._pool.fetchval(
            "UPDATE owners SET password_hash = $3 WHERE id = $1::uuid AND password_hash = $2 RETURNING 1",
            owner_id,
            row["password_hash"],
            new_hash,
        )
        if changed is None:
            raise WrongPasswordError
        return _owner(row)

    async def verify(self, email: str, password: str) -> Owner | None:
        """The owner when the password matches; None otherwise (unknown email included)."""
        row = await self._pool.fetchrow(
            f"SELECT {_OWNER_COLUMNS}, o.password_hash FROM owners o JOIN accounts a ON a.id = o.account_id "
            "WHERE o.email = $1",
            email,
        )
        stored = row["password_hash"] if row is not None else _DUMMY_HASH
        if not await asyncio.to_thread(_matches, stored, password) or row is None:
            return None
        if _hasher.check_needs_rehash(stored):
            # Parameters were raised since this hash was made: upgrade it while we have the password.
            rehashed = await asyncio.to_thread(_hasher.hash, password)
            await self._pool.execute("UPDATE owners SET password_hash = $2 WHERE id = $1::uuid", row["id"], rehashed)
        return _owner(row)


def _matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _owner(row: asyncpg.Record) -> Owner:
    return Owner(row["id"], row["account_id"], row["email"], row["account_name"], row["created_at"])
