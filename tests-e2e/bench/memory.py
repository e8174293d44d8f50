"""`make bench-memory`: each service's resident memory after a warm-up and after 100,000 requests.

The requests are the soak's mix (chaos/soak.py: the OpenAI, Anthropic and Bedrock formats,
streaming and not, a dozen tools so the optimizer plans each one, a session id), sent closed-loop
at a fixed concurrency through the whole stack against the fake providers. Each service's
resident size (its worker processes included: process_usage.py) is sampled once the warm-up is
done, at every tenth of the run, and after the last request; the growth from the warm-up to the
end is what issue 16 bounds (10%). `--requests` makes a shorter run (100,000 take 15-20 minutes
on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from chaos.soak import MEMORY_GROWTH_LIMIT, send
from process_usage import sample

from bench.latency import fake_servers
from harness import stack_env
from orqen_stack.config import StackConfig
from orqen_stack.supervisor import Stack

MIB = 1024 * 1024


async def drive(client: httpx.AsyncClient, edge: str, api_key: str, first: int, count: int, concurrency: int) -> int:
    """Send requests `first` .. `first + count - 1` of the soak's mix, `concurrency` at a time; how many failed."""
    numbers = iter(range(first, first + count))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for n in numbers:
            outcome = await send(client, n, edge, api_key, 0.0)
            failed += not outcome.ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def resident(pids: dict[str, int]) -> dict[str, int]:
    """Each service's resident bytes now."""
    return {name: sample(pid, 0.0).rss for name, pid in pids.items()}


async def run(requests: int, warmup: int, concurrency: int) -> int:
    with fake_servers() as urls, tempfile.TemporaryDirectory(prefix="orqen-bench-memory-") as home:
        stack = Stack(StackConfig.from_env(stack_env(urls, Path(home), f"benchmem{os.getpid()}")))
        info = await stack.start()
        try:
            pids = stack.pids()
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, connect=10.0)) as client:
                failed = await drive(client, info.edge_url, info.api_key, 0, warmup, concurrency)
                baseline = now = resident(pids)
                names = list(pids)
                print(f"{requests:,} requests at concurrency {concurrency} after {warmup:,} of warm-up")
                header = f"{'requests':>10}{'req/s':>8}{'failed':>8}" + "".join(f"{n + ' MiB':>16}" for n in names)
                print(header)
                print("-" * len(header))
                print(f"{0:>10}{'':>8}{failed:>8}" + "".join(f"{baseline[n] / MIB:>16.1f}" for n in names))
                done, step = 0, max(1, requests // 10)
                while done < requests:
                    count = min(step, requests - done)
                    started = time.perf_counter()
                    failed += await drive(client, info.edge_url, info.api_key, warmup + done, count, concurrency)
                    rate = count / (time.perf_counter() - started)
                    done += count
                    now = resident(pids)
                    print(f"{done:>10,}{rate:>8.0f}{failed:>8}" + "".join(f"{now[n] / MIB:>16.1f}" for n in names))
        finally:
            await stack.stop()
    print()
    print(f"{'service':<12}{'after warm-up MiB':>19}{f'after {requests:,} MiB':>22}{'growth':>9}")
    broken = []
    for name in names:
        growth = now[name] / baseline[name] - 1
        print(f"{name:<12}{baseline[name] / MIB:>19.1f}{now[name] / MIB:>22.1f}{growth:>+9.1%}")
        if growth > MEMORY_GROWTH_LIMIT:
            broken.append(f"{name}: resident memory grew {growth:.1%} (limit {MEMORY_GROWTH_LIMIT:.0%})")
    for line in broken:
        print(f"LIMIT BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=2_000, help="requests that fill caches and pools first")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.requests, args.warmup, args.concurrency)))


if __name__ == "__main__":
    main()
