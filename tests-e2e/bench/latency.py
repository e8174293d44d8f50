"""`make bench`: the latency Orqen adds to a call, per ingress format (`make bench-peer`: and LiteLLM's).

For each SDK format the same small request goes (a) straight to the fake provider that
speaks that format, (b) through the whole running stack to that same fake and, with
`--peer`, (c) through LiteLLM's proxy to that same fake (OpenAI and Anthropic formats; it
has no Bedrock Converse ingress). Each runs at every concurrency level (1, 16 and 64 by
default), non-streaming (time to the whole response) and streaming (time to the first body
byte). A gateway's added latency is its time minus the direct one at each percentile, and
"x direct" is its throughput as a fraction of the direct throughput.

The fakes answer at once and run in their own processes, so the difference is the gateway's
own work: HTTP parsing and auth at the edge, translation to the canonical shape and back, the
gRPC hop to dispatch, translation to the provider and back, and the request event.
"broken" counts requests whose connection broke: they are left out of the percentiles and
the throughput, and reported rather than hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench.peer import PEER_KEY, PEER_NAME, litellm_proxy, peer_version
from fakes.serve import free_port
from harness import ANTHROPIC_KEY, BEDROCK_BEARER, OPENAI_KEY, stack_env
from orqen_stack.config import StackConfig
from orqen_stack.supervisor import Stack

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1%3A0"


@dataclass(frozen=True)
class Target:
    """One HTTP call: where it goes, its headers and its body."""

    url: str
    headers: dict[str, str]
    body: bytes


def targets(ingress: str, stream: bool, edge: str, fake: str, orqen_key: str) -> tuple[Target, Target]:
    """(direct to the fake, through Orqen) for one ingress format."""
    json_headers = {"content-type": "application/json"}
    if ingress == "openai":
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        raw = orjson.dumps(body)
        return (
            Target(fake + "/v1/chat/completions", json_headers | {"authorization": f"Bearer {OPENAI_KEY}"}, raw),
            Target(edge + "/v1/chat/completions", json_headers | {"authorization": f"Bearer {orqen_key}"}, raw),
        )
    if ingress == "anthropic":
        body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
        if stream:
            body["stream"] = True
        raw = orjson.dumps(body)
        version = {"anthropic-version": "2023-06-01"}
        return (
            Target(fake + "/v1/messages", json_headers | version | {"x-api-key": ANTHROPIC_KEY}, raw),
            Target(edge + "/v1/messages", json_headers | version | {"authorization": f"Bearer {orqen_key}"}, raw),
        )
    operation = "converse-stream" if stream else "converse"
    raw = orjson.dumps(
        {"messages": [{"role": "user", "content": [{"text": "hello"}]}], "inferenceConfig": {"maxTokens": 64}}
    )
    path = f"/model/{BEDROCK_MODEL}/{operation}"
    return (
        Target(fake + path, json_headers | {"authorization": f"Bearer {BEDROCK_BEARER}"}, raw),
        Target(edge + path, json_headers | {"authorization": f"Bearer {orqen_key}"}, raw),
    )


STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream")


async def timed_call(client: httpx.AsyncClient, target: Target) -> float:
    """Seconds to the first body byte of a stream, or to the whole body; raises on a non-200.

    Streams are read to the end either way, so every request completes as a client's would.
    """
    started = time.perf_counter()
    first_byte = 0.0
    async with client.stream("POST", target.url, headers=target.headers, content=target.body) as response:
        async for _ in response.aiter_raw():
            first_byte = first_byte or time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"{target.url} answered {response.status_code}")
        streaming = response.headers.get("content-type", "").startswith(STREAM_TYPES)
    return (first_byte if streaming else time.perf_counter()) - started


async def measure(target: Target, concurrency: int, requests: int) -> tuple[list[float], float, int]:
    """Each answered request's latency, the throughput (answers/s) of the run, and how many broke.

    A connection that breaks (a transport error) is counted, not fatal: the table reports it.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(min(20, requests)):  # warm the connections and every cache on the path
            await timed_call(client, target)
        samples: list[float] = []
        broken = 0
        remaining = iter(range(requests))

        async def worker() -> None:
            nonlocal broken
            for _ in remaining:
                try:
                    samples.append(await timed_call(client, target))
                except httpx.TransportError:
                    broken += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return samples, len(samples) / elapsed, broken


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1] * 1000


@contextmanager
def fake_servers() -> Iterator[dict[str, str]]:
    """The three fakes, each in its own process so they do not share the client's CPU."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs, urls = [], {}
    try:
        for name in ("openai", "anthropic", "bedrock"):
            port = free_port()
            cmd = [sys.executable, "-m", "fakes.serve", "--provider", name, "--port", str(port)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls[name] = f"http://127.0.0.1:{port}"
            _wait_for_port(port)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _wait_for_port(port: int) -> None:
    # Generous: on a busy shared machine importing a fake alone can take half a minute.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"a fake upstream did not start on port {port}")


def peer_target(ingress: str, stream: bool, peer: str, orqen: Target) -> Target | None:
    """The same request through LiteLLM's proxy, for the formats it takes (not Bedrock's)."""
    if ingress == "bedrock":
        return None
    path = "/v1/chat/completions" if ingress == "openai" else "/v1/messages"
    headers = {k: v for k, v in orqen.headers.items() if k != "authorization"}
    return Target(peer + path, headers | {"authorization": f"Bearer {PEER_KEY}"}, orqen.body)


async def run(requests: int, levels: list[int], with_peer: bool, cpu: bool = False) -> None:
    with (
        fake_servers() as urls,
        tempfile.TemporaryDirectory(prefix="orqen-bench-") as home,
        litellm_proxy(urls) if with_peer else nullcontext("") as peer,
    ):
        stack = Stack(StackConfig.from_env(stack_env(urls, Path(home), f"bench{os.getpid()}")))
        info = await stack.start()
        try:
            if peer:
                print(f"peer: {PEER_NAME} {peer_version()} proxy, same fakes, same requests")
            header = f"{'ingress':<10}{'mode':<6}{'conc':>5}  {'via':<8}{'p50 ms':>9}{'p99 ms':>9}"
            header += f"{'added p50':>11}{'added p99':>11}{'req/s':>8}{'x direct':>9}{'broken':>8}"
            print(header)
            print("-" * len(header))
            for ingress in ("openai", "anthropic", "bedrock"):
                for stream in (False, True):
                    direct, gateway = targets(ingress, stream, info.edge_url, urls[ingress], info.api_key)
                    routes = {"direct": direct, "orqen": gateway}
                    if peer and (through_peer := peer_target(ingress, stream, peer, gateway)):
                        routes[PEER_NAME.lower()] = through_peer
                    for concurrency in levels:
                        count = requests if concurrency == 1 else requests * 4
                        base50 = base99 = base_rate = 0.0
                        for via, target in routes.items():
                            pids = stack.pids() if cpu and via == "orqen" else {}
                            used = {name: cpu_seconds(pid) for name, pid in pids.items()}
                            samples, rate, broken = await measure(target, concurrency, count)
                            if pids:
                                await asyncio.sleep(1)  # accounting and billing consume the run's last events
                                used = {n: (cpu_seconds(p) - used[n]) * 1e6 / count for n, p in pids.items()}
                            p50, p99 = percentile(samples, 50), percentile(samples, 99)
                            if via == "direct":
                                base50, base99, base_rate = p50, p99, rate
                            mode = "ttfb" if stream else "json"
                            added = "" if via == "direct" else f"{p50 - base50:>11.2f}{p99 - base99:>11.2f}"
                            line = f"{ingress:<10}{mode:<6}{concurrency:>5}  {via:<8}{p50:>9.2f}{p99:>9.2f}"
                            line += f"{added:>22}{rate:>8.0f}{rate / base_rate:>9.2f}{broken:>8}"
                            if pids:
                                line += "  cpu us/req " + " ".join(f"{n} {u:.0f}" for n, u in used.items())
                            print(line, flush=True)
        finally:
            await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per run at concurrency 1 (x4 above)")
    parser.add_argument("--concurrency", default="1,16,64", help="the concurrency levels, comma-separated")
    parser.add_argument("--peer", action="store_true", help="also measure LiteLLM's proxy (make bench-peer)")
    parser.add_argument(
        "--cpu", action="store_true", help="also print each service's CPU time per request on Orqen's rows"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    asyncio.run(run(args.requests, levels, args.peer, args.cpu))


if __name__ == "__main__":
    main()
