"""How long a tool list no worker has seen takes to be routed by every worker of the optimizer's group.

A request whose list holds more than a few tools the worker has no vector for goes out whole
("passthrough") while the worker embeds them in the background; the vectors are shared in Redis,
so the other workers (and replicas) take them from there. This starts `python -m orqen_optimizer`
with N worker processes on an empty Redis database, then sends one new list of 500 BFCL tools (a
question from the catalogue and its own tools among them) at a steady pace, each plan to the
worker with the fewest in flight as the edge sends it, until every worker has routed it three
times in a row. It prints, per round (a new list and a fresh Redis database each): the time to the
first routed plan and to every worker routing, the plans forwarded whole meanwhile, and the CPU
the group spent from the first plan to the last.

    .venv/bin/python services/optimizer/bench/new_list.py [--workers 2] [--rounds 3] [--tools 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

import grpc
import orjson
import through_grpc

from orqen.v1 import accounting_pb2_grpc, common_pb2, optimizer_pb2, optimizer_pb2_grpc
from orqen_common.grpc_client import Balancer, open_channels
from orqen_common.worker_group import available_cpus
from orqen_optimizer import bfcl
from orqen_optimizer.tools import tool_name
from orqen_testing.servers import claimed_redis_db, shared_servers

IN_A_ROW = 3  # routed plans in a row that make a worker count as routing the list
TIMEOUT_SECONDS = 300.0


def new_list(rng: random.Random, size: int) -> dict[str, Any]:
    """A chat request: a BFCL question with its own tools among others of the catalogue, one definition per name."""
    cases = [c for category in bfcl.SINGLE_TURN for c in bfcl.cases(category) if c.needed]
    catalogue: dict[str, dict[str, Any]] = {}
    for case in cases:
        for tool in case.tools:
            catalogue.setdefault(tool_name(tool), tool)
    case = rng.choice(cases)
    own = {tool_name(t): t for t in case.tools}
    others = rng.sample(sorted(set(catalogue) - set(own)), size - len(own))
    tools = [*own.values(), *(catalogue[name] for name in others)]
    rng.shuffle(tools)
    return {"messages": [{"role": "user", "content": case.question}], "tools": tools}


async def one_round(workers: int, chat: dict[str, Any], redis_url: str, accounting_addr: str, every_ms: float) -> str:
    request = optimizer_pb2.PlanRequest(
        context=common_pb2.RequestContext(account_id=str(uuid.uuid4())), chat_json=orjson.dumps(chat)
    )
    async with through_grpc.optimizer_group(workers, redis_url, accounting_addr) as (addr, pid):
        channels = open_channels(addr, through_grpc.TOKEN, through_grpc.CHANNELS)
        balancer = Balancer([optimizer_pb2_grpc.OptimizerStub(c) for c in channels])
        streak: Counter[int] = Counter()  # per worker: routed plans in a row
        whole = 0
        first_routed: float | None = None
        done = asyncio.Event()

        async def plan() -> None:
            nonlocal whole, first_routed
            with balancer() as (optimizer, heard):
                answer = await optimizer.Plan(request, timeout=30)
                heard(answer.worker, answer.group, answer.workers)
            routed = answer.stats.tools_output < answer.stats.tools_input
            streak[answer.worker] = streak[answer.worker] + 1 if routed else 0
            if routed and first_routed is None:
                first_routed = time.perf_counter()
            whole += not routed
            if len(streak) == answer.workers and all(n >= IN_A_ROW for n in streak.values()):
                done.set()

        cpu, started = through_grpc.cpu_seconds(pid), time.perf_counter()
        calls: set[asyncio.Task[None]] = set()
        while not done.is_set() and time.perf_counter() - started < TIMEOUT_SECONDS:
            call = asyncio.ensure_future(plan())
            calls.add(call)
            call.add_done_callback(calls.discard)
            await asyncio.sleep(every_ms / 1000)
        ended = time.perf_counter()
        await asyncio.gather(*calls)
        spent = through_grpc.cpu_seconds(pid) - cpu
        await asyncio.gather(*(c.close() for c in channels))
    if not done.is_set():
        return f"not routed by every worker within {TIMEOUT_SECONDS:.0f} s ({whole} plans forwarded whole)"
    assert first_routed is not None
    return (
        f"first routed after {first_routed - started:5.1f} s, by every worker after {ended - started:5.1f} s; "
        f"{whole:4d} plans forwarded whole; the group's CPU {spent:5.1f} s"
    )


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    accounting = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(through_grpc.DefaultPreferences(), accounting)
    accounting_addr = f"127.0.0.1:{accounting.add_insecure_port('127.0.0.1:0')}"
    await accounting.start()
    servers = shared_servers()
    try:
        print(
            f"a new list of {args.tools} tools, one plan every {args.every_ms:.0f} ms, until every worker routed it "
            f"{IN_A_ROW} times in a row (an empty Redis database each round):"
        )
        for round_ in range(args.rounds):
            chat = new_list(rng, args.tools)
            for workers in args.workers:
                with claimed_redis_db(servers.redis_url()) as redis_url:
                    line = await one_round(workers, chat, redis_url, accounting_addr, args.every_ms)
                print(f"  round {round_ + 1}, {workers} worker{'s' if workers > 1 else ' '}: {line}", flush=True)
    finally:
        servers.close()
        await accounting.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workers",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[available_cpus()],
        help="worker counts, comma-separated (default: one per available CPU)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", type=int, default=500)
    parser.add_argument("--every-ms", type=float, default=20.0, help="the pace of plans")
    parser.add_argument("--seed", type=int, default=11)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
