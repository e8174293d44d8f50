"""Retention of the raw request log: rows older than the retention period are deleted in batches.

Small batches keep each delete short (no long lock, no huge WAL burst, ingest goes on beside
it), and the BRIN index on created_at finds old rows without a scan. The daily rollups are kept:
usage, analytics and savings of any past month stay answerable after the raw rows are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_DELETE_BATCH = """
    DELETE FROM requests WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM requests WHERE created_at < $1 LIMIT $2
    ))
"""


class Retention:
    def __init__(self, pool: asyncpg.Pool, days: int, *, batch: int = 5000, every_seconds: float = 3600.0) -> None:
        self._pool = pool
        self._days = days
        self._batch = batch
        self._every = every_seconds

    async def purge(self, now: dt.datetime) -> int:
        """Delete the request rows (and sessions idle since) older than the period; returns the rows deleted."""
        cutoff = now - dt.timedelta(days=self._days)
        deleted = 0
        while True:
            status = await self._pool.execute(_DELETE_BATCH, cutoff, self._batch)
            count = int(status.split()[-1])
            deleted += count
            if count < self._batch:
                break
        await self._pool.execute("DELETE FROM sessions WHERE last_at < $1", cutoff)
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now and then every `every_seconds` until `stop` is set; a failed round is retried next time."""
        while not stop.is_set():
            try:
                deleted = await self.purge(dt.datetime.now(dt.UTC))
                if deleted:
                    log.info("old request rows deleted", rows=deleted, retention_days=self._days)
            except (asyncpg.PostgresError, OSError) as err:
                log.warning("retention round failed; retried later", error=repr(err))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every)
