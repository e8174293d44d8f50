"""What load balancing costs a request, and how closely traffic follows the weights.

Prints, for the real `Balancer` in one process:
1. the share of first choices per deployment over many requests (weights 1:3:6), seeded: exact
   for the seed, and its largest deviation from the weights;
2. the CPU time one balanced request spends in the balancer (order + admit + finish), per
   strategy, with 2 and 16 deployments and no rate limits (no Redis on the path);
3. the same with an rpm limit, which adds one Redis script call per admitted call (the session's
   Redis: ORQEN_REDIS_URL, else an embedded one from orqen_testing).
Wall-clock figures depend on the machine's load; say so next to them.
    .venv/bin/python services/dispatch/bench/balancing.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections import Counter

from redis.asyncio import Redis

from orqen_common.deployments import BalancedModel, Deployment
from orqen_dispatch.balancer import Balancer, EjectionPolicy
from orqen_dispatch.latency import LatencyStats


def model(strategy: str, count: int, rpm: int = 0) -> BalancedModel:
    deployments = tuple(Deployment(f"d{i}", "openai", weight=1 + i % 4, rpm=rpm) for i in range(count))
    return BalancedModel(f"bench-{strategy}-{count}-{rpm}", strategy, deployments)


async def shares(redis: Redis, requests: int) -> None:
    balancer = Balancer(redis, LatencyStats(redis), EjectionPolicy(), rng=random.Random(1))
    weights = {"a": 1, "b": 3, "c": 6}
    balanced = BalancedModel(
        "bench-shares", "weighted", tuple(Deployment(n, "openai", weight=w) for n, w in weights.items())
    )
    first: Counter[str] = Counter()
    for _ in range(requests):
        first[(await balancer.order("bench", balanced))[0].name] += 1
    total = sum(weights.values())
    deviations = {n: first[n] / requests - w / total for n, w in weights.items()}
    print(f"first choices over {requests} requests, weights 1:3:6 (seed 1):")
    for name, weight in weights.items():
        print(f"  {name}: {first[name] / requests:.4f} (target {weight / total:.4f})")
    print(f"  largest deviation: {max(abs(d) for d in deviations.values()):.4f}")


async def per_request(redis: Redis, balanced: BalancedModel, requests: int) -> list[float]:
    """Microseconds one request spends in the balancer: order, admit the first, finish it."""
    balancer = Balancer(redis, LatencyStats(redis), EjectionPolicy())
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        slot = (await balancer.order("bench", balanced))[0]
        refusal = await slot.admit()
        slot.finish(200 if refusal is None else 429)
        times.append((time.perf_counter() - started) * 1e6)
    await asyncio.sleep(0.2)  # the background latency writes land before the next run
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered):7.1f} µs   p95 {p95:7.1f} µs"


async def main(requests: int) -> None:
    url = os.environ.get("ORQEN_REDIS_URL")
    if url is None:
        from orqen_testing.servers import redis_url

        url = redis_url()
    redis = Redis.from_url(url)
    try:
        await shares(redis, requests)
        print("time in the balancer per request (no rate limits):")
        for strategy in ("weighted", "least_inflight", "lowest_latency"):
            for count in (2, 16):
                times = await per_request(redis, model(strategy, count), requests // 10)
                print(f"  {strategy:15s} {count:2d} deployments: {summary(times)}")
        print("with an rpm limit (one Redis script call per admitted call):")
        times = await per_request(redis, model("weighted", 2, rpm=10**9), requests // 10)
        print(f"  weighted         2 deployments: {summary(times)}")
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
