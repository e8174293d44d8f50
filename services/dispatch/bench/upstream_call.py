"""What one provider call costs dispatch in CPU: the OpenAI adapter through `upstream_client`, one call at a time.

A fake OpenAI upstream runs in its own process (its CPU is not counted); this process makes
`--requests` small non-streaming and streaming chat calls through `OpenAICompatible` over the
pool that dispatch's `upstream_client` opens, on uvloop as dispatch runs, and prints CPU time
(user + system) and wall time per call. The script runs unchanged against any dispatch
version that has `upstream_client`, so a before/after is the same command in two trees:
    PYTHONPATH=tests-e2e .venv/bin/python services/dispatch/bench/upstream_call.py [--requests 3000]
The figures move with the machine's load (a shared machine: say so next to them).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop

from fakes.serve import free_port
from harness import OPENAI_KEY
from orqen_common.formats.openai import ChatRequest, UserMessage
from orqen_dispatch.__main__ import upstream_client
from orqen_dispatch.providers.base import StreamState
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.settings import DispatchSettings

CHAT = ChatRequest(model="gpt-4o-mini", messages=[UserMessage(content="hi")])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, call: Callable[[], Awaitable[object]], requests: int) -> None:
    for _ in range(min(200, requests)):
        await call()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(requests):
        await call()
    cpu = (cpu_seconds() - cpu0) * 1e6 / requests
    wall = (time.perf_counter() - wall0) * 1e6 / requests
    print(f"{name:28s} cpu {cpu:6.0f} us/call   wall {wall:6.0f} us/call", flush=True)


async def run(url: str, requests: int, rounds: int) -> None:
    os.environ.setdefault("ORQEN_INTERNAL_TOKEN", "bench")
    async with upstream_client(DispatchSettings()) as http:
        provider = OpenAICompatible("openai", http, url, OPENAI_KEY)

        async def complete() -> object:
            return await provider.complete(CHAT, "gpt-4o-mini", {})

        async def stream() -> object:
            return [c async for c in provider.stream(CHAT, "gpt-4o-mini", {}, StreamState())]

        print(f"client: {type(http).__module__}.{type(http).__name__}")
        for _ in range(rounds):
            await measure("complete (non-streaming)", complete, requests)
            await measure("stream (to the usage chunk)", stream, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each kind")
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "fakes.serve", "--provider", "openai", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or fake.poll() is not None:
                    raise SystemExit("the fake OpenAI upstream did not start") from None
                time.sleep(0.1)
        uvloop.run(run(f"http://127.0.0.1:{port}/v1", args.requests, args.rounds))
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
