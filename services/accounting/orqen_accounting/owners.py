"""Dashboard owners: email + password, the password kept only as an argon2id hash.

Hashing is deliberately slow (that is its point), so it runs in a worker thread and
never blocks the event loop. An unknown email costs one hash too, against a fixed
dummy, so the time to answer does not reveal which emails exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
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

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory defaults
_DUMMY_HASH = _hasher.hash("orqen-dummy-password-for-unknown-emails")


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    account_id: str
    email: str
    account_name: str
    created_at: dt.datetime


class EmailTakenError(Exception):
    """Another owner already uses this email."""


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


class OwnerRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, account_id: str, email: str, password: str) -> Owner:
        """Store a new owner of `account_id`; EmailTakenError when the email is in use."""
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        try:
            row = await self._pool.fetchrow(
                f"""
                WITH o AS (
                    INSERT INTO owners (account_id, email, password_hash) VALUES ($1::uuid, $2, $3)
                    RETURNING *
                )
                SELECT {_OWNER_COLUMNS} FROM o JOIN accounts a ON a.id = o.account_id
                """,
                account_id,
                email,
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise EmailTakenError from None
        assert row is not None
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


def _owner(row: asyncpg.Record) -> Owner:
    return Owner(row["id"], row["account_id"], row["email"], row["account_name"], row["created_at"])
