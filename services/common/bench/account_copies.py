"""What a request pays to use a copy of what accounting owns: checked in Redis per use, or kept while watched.

`.venv/bin/python services/common/bench/account_copies.py [--calls N]` times, against a real
Redis (ORQEN_TEST_REDIS_URL's server, else an embedded one), the two copies every request uses:
the verdict on its API key (orqen_common.auth, in the edge) and its account's configuration
(orqen_common.account_cache, in dispatch and the optimizer), each looked up the way it was before
the change watch (its Redis entry or counter read per use) and with a watch that hears accounting's
announcements (orqen_common.changes). It prints the wall time (p50, p99) and the CPU time per
lookup; neither accounting nor the configuration's loader is asked after the first lookup, so the
figures are the per-request cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import numpy as np
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2
from orqen_common import aio
from orqen_common.account_cache import AccountCache
from orqen_common.auth import ApiKeyAuthenticator
from orqen_common.cache import AuthCacheKeys
from orqen_common.changes import open_change_watch
from orqen_testing.servers import claimed_redis_db, shared_servers

KEY = "sk-orq-bench-key"


class Accounting:
    """Accounting's Authenticate for one key (asked once: the verdict is cached after)."""

    async def Authenticate(self, request: Any, timeout: float) -> accounting_pb2.AuthenticateResponse:  # noqa: ASYNC109
        return accounting_pb2.AuthenticateResponse(account_id="acct", api_key_id="key", account_name="bench")


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float, float]:
    """p50 and p99 wall milliseconds per call, and CPU microseconds per call."""
    for _ in range(50):
        await call()
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - started)
    used = (time.process_time() - cpu) / calls
    p50, p99 = np.percentile(walls, [50, 99]) * 1000
    return float(p50), float(p99), used * 1e6


async def measure(redis_url: str, calls: int) -> None:
    async with AsyncExitStack() as stack:
        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        watch = open_change_watch(stack, redis)
        while watch.current() is None:  # noqa: ASYNC110 (the watch offers no event to wait on)
            await asyncio.sleep(0.01)

        async def load(account_id: str, previous: int | None) -> tuple[int, bool]:
            return 1, True

        print(f"{'copy':<24}{'looked up':<22}{'p50 ms':>9}{'p99 ms':>9}{'CPU us':>9}")
        for label, used in (("per use in Redis", None), ("kept while watched", watch)):
            verify = ApiKeyAuthenticator(redis, Accounting(), 60, AuthCacheKeys("bench"), watch=used)  # type: ignore[arg-type]
            p50, p99, cpu = await timed(partial(verify, KEY), calls)
            print(f"{'API key verdict':<24}{label:<22}{p50:>9.3f}{p99:>9.3f}{cpu:>9.0f}")
        for label, used in (("per use in Redis", None), ("kept while watched", watch)):
            cache: AccountCache[int] = AccountCache(redis, load, ttl_seconds=300, watch=used)
            p50, p99, cpu = await timed(partial(cache.get, "acct"), calls)
            print(f"{'account configuration':<24}{label:<22}{p50:>9.3f}{p99:>9.3f}{cpu:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    servers = shared_servers()
    try:
        with claimed_redis_db(servers.redis_url()) as url:
            aio.run(measure(url, args.calls))  # on uvloop, as the services run
    finally:
        servers.close()


if __name__ == "__main__":
    main()
