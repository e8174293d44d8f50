"""What one gRPC call costs its client and its server in CPU, with and without gRPC's EventEngine client.

    .venv/bin/python services/common/bench/grpc_calls.py [--calls 6000] [--concurrency 16] [--rounds 2]
        [--size 300] [--channels 1,64]

A grpc.aio server on uvloop in one process answers a `--size`-byte request with its first 300
bytes, as a unary call and as a server stream of one message (the shape of a stream whose chunks
went together); a client on uvloop in another process keeps `--concurrency` calls in flight, over
each of `--channels` connections in turn (the edge's 64 optimizer channels, against one). Each row
is one client process with the GRPC_EXPERIMENTS value it names (gRPC reads it once, as it loads,
so each setting needs its own process; "" is gRPC's default, `orqen_common.grpc_env.EXPERIMENTS` what the services set);
the server keeps gRPC's default throughout. The settings alternate `--rounds` times. CPU is user +
system time per call (psutil), which moves far less with the machine's load than the rate does.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import grpc
import psutil
import uvloop

from orqen_common import grpc_env
from orqen_stack.procs import free_port


async def serve(port: int) -> None:
    async def unary(request: bytes, context: object) -> bytes:
        return request[:300]

    async def stream(request: bytes, context: object) -> AsyncIterator[bytes]:
        yield request[:300]

    handlers = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def call(port: int, kind: str, calls: int, concurrency: int, size: int, channels: int) -> tuple[float, float]:
    """(seconds, this process's CPU seconds) of `calls` calls, `concurrency` at a time, each over the next
    of `channels` connections, after a warm-up."""
    payload = b"x" * size
    # Connections of their own: gRPC shares one between channels to the same address by default.
    opened = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    unaries = [channel.unary_unary("/bench.Echo/Unary") for channel in opened]
    streams = [channel.unary_stream("/bench.Echo/Stream") for channel in opened]
    turn = itertools.count()

    async def one() -> None:
        i = next(turn) % channels
        if kind == "unary":
            await unaries[i](payload)
        else:
            async for _ in streams[i](payload):
                pass

    try:
        for _ in range(max(200, 4 * channels)):
            await one()
        remaining = iter(range(calls))

        async def caller() -> None:
            for _ in remaining:
                await one()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await asyncio.gather(*(channel.close() for channel in opened))


def client(
    port: int, experiments: str, calls: int, concurrency: int, server_pid: int, size: int, channels: int
) -> list[str]:
    """One row per call shape, measured in a new process with GRPC_EXPERIMENTS=`experiments`."""
    code = (
        "import sys, uvloop; sys.path.insert(0, sys.argv[1]); import grpc_calls as b; "
        "print(*uvloop.run(b.call(int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:]))))"
    )
    rows = []
    for kind in ("unary", "stream"):
        server = psutil.Process(server_pid)
        before = sum(server.cpu_times()[:2])
        done = subprocess.run(
            [sys.executable, "-c", code, os.path.dirname(__file__), str(port), kind]
            + [str(n) for n in (calls, concurrency, size, channels)],
            env={**os.environ, "GRPC_EXPERIMENTS": experiments},
            capture_output=True,
            text=True,
            check=True,
        )
        server_cpu = sum(server.cpu_times()[:2]) - before
        seconds, client_cpu = (float(x) for x in done.stdout.split())
        rows.append(
            f"{experiments or '(default)':<22}{channels:>8}  {kind:<8}{calls / seconds:>8.0f}"
            f"{client_cpu / calls * 1e6:>12.0f}{server_cpu / calls * 1e6:>12.0f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=300, help="bytes of each request (the answer is 300)")
    parser.add_argument("--channels", default="1", help="connections taken in turn, comma-separated counts")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process's port
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve(args.serve))
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    try:
        time.sleep(2)  # the server imports grpc and listens
        print(f"{args.calls} calls per row, {args.concurrency} in flight, {args.size}-byte requests, 300-byte answers")
        print(f"{'GRPC_EXPERIMENTS':<22}{'channels':>8}  {'call':<8}{'calls/s':>8}{'client us':>12}{'server us':>12}")
        for _ in range(args.rounds):
            for experiments in ("", grpc_env.EXPERIMENTS):
                for channels in (int(n) for n in args.channels.split(",")):
                    for row in client(port, experiments, args.calls, args.concurrency, server.pid, args.size, channels):
                        print(row, flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
