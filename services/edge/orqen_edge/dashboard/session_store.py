"""Server-side dashboard sessions in Redis.

The browser holds only a random token in an HttpOnly cookie; Redis holds the session
under the token's SHA-256, so a Redis dump reveals no usable cookie. Each session carries
its own CSRF token. Sessions end after `session_idle_seconds` without use,
`session_max_seconds` after login, or at logout. Each owner's sessions are also indexed
under the owner, so a password change or the owner's removal can end all of them at once.
Losing Redis logs owners out; no record is lost.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass

import grpc
import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.context import Principal
from orqen_common.errors import OrqenError

_KEY_PREFIX = "orqen:dashboard-session:"
_OWNER_PREFIX = "orqen:dashboard-owner-sessions:"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """An owner logged in to the dashboard of one account."""

    owner_id: str
    email: str
    account_id: str
    account_name: str
    csrf_token: str
    created_at: float

    def principal(self) -> Principal:
        return Principal(kind="session", account_id=self.account_id, account_name=self.account_name)


def _key(token: str) -> str:
    return _KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def _owner_key(owner_id: str) -> str:
    """The set of the owner's session keys (some may have expired already: deleting those is a no-op)."""
    return _OWNER_PREFIX + owner_id


def _unavailable() -> OrqenError:
    return OrqenError.of(grpc.StatusCode.UNAVAILABLE, "Dashboard sessions are unavailable right now; try again.")


class SessionStore:
    def __init__(self, redis: Redis, idle_seconds: int, max_seconds: int) -> None:
        self._redis = redis
        self._idle = idle_seconds
        self._max = max_seconds

    async def create(
        self, owner_id: str, email: str, account_id: str, account_name: str
    ) -> tuple[str, DashboardSession]:
        """A new session and the cookie token that names it."""
        token = secrets.token_urlsafe(32)
        session = DashboardSession(owner_id, email, account_id, account_name, secrets.token_urlsafe(32), time.time())
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_key(token), orjson.dumps(asdict(session)), ex=min(self._idle, self._max))
                pipe.sadd(_owner_key(owner_id), _key(token))
                # No session outlives session_max_seconds, so neither need the index.
                pipe.expire(_owner_key(owner_id), self._max)
                await pipe.execute()
        except RedisError as err:
            log.warning("session store unavailable", error=str(err))
            raise _unavailable() from None
        return token, session

    async def get(self, token: str) -> DashboardSession | None:
        """The live session behind a cookie token (its idle timer restarts), or None."""
        key = _key(token)
        try:
            raw = await self._redis.get(key)
            if raw is None:
                return None
            session = DashboardSession(**orjson.loads(raw))
            left = self._max - (time.time() - session.created_at)
            if left <= 0:
                await self._redis.delete(key)
                return None
            await self._redis.expire(key, max(1, int(min(self._idle, left))))
        except RedisError as err:
            log.warning("session store unavailable", error=str(err))
            raise _unavailable() from None
        return session

    async def delete(self, token: str) -> None:
        try:
            await self._redis.delete(_key(token))
        except RedisError as err:
            log.warning("session store unavailable", error=str(err))
            raise _unavailable() from None

    async def end_owner_sessions(self, owner_id: str, keep_token: str | None = None) -> None:
        """End every session of the owner, except the one behind `keep_token` (the caller's own)."""
        index = _owner_key(owner_id)
        kept = _key(keep_token) if keep_token else None
        try:
            ended = [key for key in await self._redis.smembers(index) if _text(key) != kept]
            if ended:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(*ended)
                    pipe.srem(index, *ended)
                    await pipe.execute()
        except RedisError as err:
            log.warning("session store unavailable", error=str(err))
            raise _unavailable() from None

    def expires_at(self, session: DashboardSession) -> float:
        """When the session ends at the latest (the idle timeout can end it sooner)."""
        return session.created_at + self._max


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
