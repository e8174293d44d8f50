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

The client is this one process on aiohttp: 0.1-0.5 ms of its CPU a request, where httpx (the
client until Dec 5 2026) took 1.1 ms and so held the direct rows at concurrency 16 to what one
core of httpx could send (0.97 of a core busy) rather than what the fake answers. `--cpu` prints
the client's CPU per request and its share of a core on every row: near 1.0, the client and not
the server measured set the rate.

The "hit" rows send the same request with `x-orqen-cache: use`: after the warm-up every one is
answered from the response cache (no provider call), so they show a cache hit's latency. Before
the table, the cost of one cache lookup on the request path (bench/response_cache.py).

`--tools N` measures a large tool list instead: an OpenAI-format request carrying N real tool
definitions (bench/large_toolset.py; 500 are about 390 KB of JSON), straight to the fake and
through Orqen once the optimizer has indexed them, with the number of tools Orqen forwarded and
the share of requests routed: planned by the optimizer (A/B control traffic included, which is
planned and then sent whole) rather than failed open for a plan past its deadline; and the share
of them routed by keywords because the optimizer had no turn at its model for them in time
(`keyword_busy`).
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

import aiohttp
import orjson
from process_usage import cpu_seconds

from bench.budget_check import budget_check_cost
from bench.gc_pauses import Collections, metrics_urls
from bench.gc_pauses import summary as gc_summary
from bench.large_toolset import large_toolset
from bench.peer import PEER_KEY, PEER_NAME, litellm_proxy, peer_version
from bench.response_cache import lookup_cost
from harness import ANTHROPIC_KEY, BEDROCK_BEARER, OPENAI_KEY, stack_env
from orqen_common.heap import freeze_startup_heap
from orqen_stack.config import StackConfig
from orqen_stack.procs import free_port
from orqen_stack.supervisor import Stack

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1%3A0"
# A large tool list is well over the e2e harness's 256 KB body limit; Orqen's default is 10 MB.
TOOLS_BODY_LIMIT = 16 * 1024 * 1024
# How long the optimizer may take to index a large tool list before its requests are routed.
INDEXING_SECONDS = 300


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


def tool_list_targets(edge: str, fake: str, orqen_key: str, count: int) -> tuple[Target, Target]:
    """(direct to the fake, through Orqen) for an OpenAI-format request carrying `count` real tools."""
    tools, question = large_toolset(count)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], "tools": tools}
    raw = orjson.dumps(body | {"max_tokens": 64})
    json_headers = {"content-type": "application/json"}
    return (
        Target(fake + "/v1/chat/completions", json_headers | {"authorization": f"Bearer {OPENAI_KEY}"}, raw),
        Target(edge + "/v1/chat/completions", json_headers | {"authorization": f"Bearer {orqen_key}"}, raw),
    )


STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream")
FORWARDED_HEADER = "x-orqen-tools-output"
ROUTING_HEADER = "x-orqen-routing"


async def timed_call(
    client: aiohttp.ClientSession, target: Target, forwarded: list[tuple[int, str]] | None = None
) -> float:
    """Seconds to the first body byte of a stream, or to the whole body; raises on a non-200.

    Streams are read to the end either way, so every request completes as a client's would.
    `forwarded` collects how many tools Orqen forwarded and its routing mode (x-orqen-tools-output, x-orqen-routing).
    """
    started = time.perf_counter()
    first_byte = 0.0
    async with client.post(target.url, headers=target.headers, data=target.body) as response:
        async for _ in response.content.iter_any():
            first_byte = first_byte or time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"{target.url} answered {response.status}")
        streaming = response.headers.get("content-type", "").startswith(STREAM_TYPES)
        if forwarded is not None and FORWARDED_HEADER in response.headers:
            forwarded.append((int(response.headers[FORWARDED_HEADER]), response.headers.get(ROUTING_HEADER, "")))
    return (first_byte if streaming else time.perf_counter()) - started


async def wait_until_routed(target: Target) -> int:
    """Send the request until Orqen routes it (its tools indexed); how many requests that took.

    Until the optimizer has embedded a large tool list, requests carrying it go out whole.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:
        deadline = time.monotonic() + INDEXING_SECONDS
        sent = 0
        while time.monotonic() < deadline:
            async with client.post(target.url, headers=target.headers, data=target.body) as response:
                sent += 1
                if response.status != 200:
                    raise RuntimeError(f"{target.url} answered {response.status}: {(await response.text())[:300]}")
                if not response.headers.get("x-orqen-routing", "passthrough").startswith("passthrough"):
                    return sent
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the tools were still not routed after {INDEXING_SECONDS} s")


@dataclass(frozen=True)
class Run:
    """One row's measurement."""

    samples: list[float]  # each answered request's seconds
    rate: float  # answers a second
    broken: int  # requests whose connection broke
    client_cpu: float  # the client's CPU seconds over the run (this process: every request it sent and read)
    elapsed: float  # the run's seconds


async def measure(
    target: Target, concurrency: int, requests: int, forwarded: list[tuple[int, str]] | None = None
) -> Run:
    """`requests` calls of `target`, `concurrency` at a time, after a warm-up.

    A connection that breaks (a transport error, or no answer within 30 s) is counted, not fatal:
    the table reports it.
    """
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        for _ in range(min(20, requests)):  # warm the connections and every cache on the path
            await timed_call(client, target)
        samples: list[float] = []
        broken = 0
        remaining = iter(range(requests))

        async def worker() -> None:
            nonlocal broken
            for _ in remaining:
                try:
                    samples.append(await timed_call(client, target, forwarded))
                except (aiohttp.ClientError, TimeoutError):
                    broken += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return Run(samples, len(samples) / elapsed, broken, cpu, elapsed)


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


Routes = dict[str, Target]


def format_routes(edge: str, fakes: dict[str, str], orqen_key: str, peer: str) -> list[tuple[str, str, Routes]]:
    """(ingress, mode, the routes to measure) of each row group of the per-format table."""
    groups = []
    for ingress in ("openai", "anthropic", "bedrock"):
        for stream in (False, True):
            direct, gateway = targets(ingress, stream, edge, fakes[ingress], orqen_key)
            routes = {"direct": direct, "orqen": gateway}
            routes["hit"] = Target(gateway.url, gateway.headers | {"x-orqen-cache": "use"}, gateway.body)
            if peer and (through_peer := peer_target(ingress, stream, peer, gateway)):
                routes[PEER_NAME.lower()] = through_peer
            groups.append((ingress, "ttfb" if stream else "json", routes))
    return groups


async def run(
    requests: int,
    levels: list[int],
    with_peer: bool,
    tools: int,
    cpu: bool = False,
    gc_log: bool = False,
    settings: dict[str, str] | None = None,
) -> None:
    with (
        fake_servers() as urls,
        tempfile.TemporaryDirectory(prefix="orqen-bench-") as home,
        litellm_proxy(urls) if with_peer else nullcontext("") as peer,
    ):
        env = stack_env(urls, Path(home), f"bench{os.getpid()}")
        if tools:
            env["ORQEN_MAX_BODY_BYTES"] = str(TOOLS_BODY_LIMIT)
        env.update(settings or {})
        stack = Stack(StackConfig.from_env(env))
        info = await stack.start()
        # The client's own full collections are not the server's latency: one walking everything this
        # process imported took 37-41 ms, once a run.
        freeze_startup_heap()
        try:
            if peer:
                print(f"peer: {PEER_NAME} {peer_version()} proxy, same fakes, same requests")
            if tools:
                direct, gateway = tool_list_targets(info.edge_url, urls["openai"], info.api_key, tools)
                routes = {"direct": direct, "orqen": gateway}
                if peer and (through_peer := peer_target("openai", False, peer, gateway)):
                    routes[PEER_NAME.lower()] = through_peer
                warmup = await wait_until_routed(gateway)
                print(f"{tools} tools, {len(direct.body) / 1024:.0f} KB of JSON; routed after {warmup} requests")
                groups = [(f"{tools} tools", "json", routes)]
            else:
                groups = format_routes(info.edge_url, urls, info.api_key, peer)
                costs = await lookup_cost(stack.service_env["ORQEN_REDIS_URL"])
                print(
                    "response cache lookup (key + Redis round trip): "
                    + ", ".join(f"{outcome} p50 {p50:.3f} ms p99 {p99:.3f} ms" for outcome, (p50, p99) in costs.items())
                )
            header = f"{'ingress':<10}{'mode':<6}{'conc':>5}  {'via':<8}{'p50 ms':>9}{'p99 ms':>9}"
            header += f"{'added p50':>11}{'added p99':>11}{'req/s':>8}{'x direct':>9}{'broken':>8}"
            header += f"{'tools fwd':>16}{'routed':>8}{'busy':>7}" if tools else ""
            print(header)
            print("-" * len(header))
            for ingress, mode, routes in groups:
                for concurrency in levels:
                    count = requests if concurrency == 1 else requests * 4
                    base50 = base99 = base_rate = 0.0
                    for via, target in routes.items():
                        pids = stack.pids() if cpu and via == "orqen" else {}
                        used = {name: cpu_seconds(pid) for name, pid in pids.items()}
                        watched = gc_log and via == "orqen"
                        collections = Collections(metrics_urls(info.edge_url, stack.config)) if watched else None
                        forwarded: list[tuple[int, str]] = []
                        measured = await measure(target, concurrency, count, forwarded)
                        samples, rate, broken = measured.samples, measured.rate, measured.broken
                        if pids:
                            await asyncio.sleep(1)  # accounting and billing consume the run's last events
                            used = {n: (cpu_seconds(p) - used[n]) * 1e6 / count for n, p in pids.items()}
                        p50, p99 = percentile(samples, 50), percentile(samples, 99)
                        if via == "direct":
                            base50, base99, base_rate = p50, p99, rate
                        added = "" if via == "direct" else f"{p50 - base50:>11.2f}{p99 - base99:>11.2f}"
                        line = f"{ingress:<10}{mode:<6}{concurrency:>5}  {via:<8}{p50:>9.2f}{p99:>9.2f}"
                        line += f"{added:>22}{rate:>8.0f}{rate / base_rate:>9.2f}{broken:>8}"
                        if tools and via == "orqen":
                            line += _forwarded(forwarded, len(samples), tools)
                        if cpu:
                            line += f"  cpu us/req client {measured.client_cpu * 1e6 / count:.0f} "
                            line += f"({measured.client_cpu / measured.elapsed:.2f} of a core)"
                            line += "".join(f" {n} {u:.0f}" for n, u in used.items())
                        if collections:
                            line += gc_summary(collections.since(), count)
                        print(line, flush=True)
            costs = await budget_check_cost(stack.service_env["ORQEN_REDIS_URL"])
            print("\nbudget check on the request path (4 per-minute limits, 4 period counters; bench/budget_check.py)")
            for step, (p50, p95) in costs.items():
                print(f"  {step:<7} p50 {p50:.3f} ms  p95 {p95:.3f} ms", flush=True)
            print("  (redis: a bare script round trip to the same Redis, the floor under any check kept there)")
        finally:
            await stack.stop()


def _forwarded(forwarded: list[tuple[int, str]], answered: int, offered: int) -> str:
    """Tools forwarded per request (median) and how many requests went out with every tool; the share routed,
    and the share routed by keywords because the optimizer was busy.

    A request that carries every tool was failed open (its plan missed the deadline: routing
    "passthrough") or is A/B control traffic (routing "<mode>_ab_ctrl", planned all the same); one
    without the x-orqen-tools-output header got no plan at all.
    """
    counts = [count for count, _ in forwarded]
    whole = answered - len(counts) + sum(c == offered for c in counts)
    median = f"{statistics.median(counts):.0f}" if counts else "-"
    routed = sum(not mode.startswith("passthrough") for _, mode in forwarded) / max(answered, 1)
    busy = sum(mode.startswith("keyword_busy") for _, mode in forwarded) / max(answered, 1)
    return f"{median + (f' ({whole} all)' if whole else ''):>16}{routed:>8.1%}{busy:>7.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per run at concurrency 1 (x4 above)")
    parser.add_argument("--concurrency", default="1,16,64", help="the concurrency levels, comma-separated")
    parser.add_argument("--peer", action="store_true", help="also measure LiteLLM's proxy (make bench-peer)")
    parser.add_argument("--tools", type=int, default=0, help="measure a request carrying this many real tools instead")
    parser.add_argument(
        "--cpu", action="store_true", help="also print each service's CPU time per request on Orqen's rows"
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="also print each service's garbage collections on Orqen's rows (young ones: their time per request)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the stack's services, e.g. ORQEN_OPTIMIZER_MODEL_TURNS=1 (repeatable; the stack "
        "takes no ORQEN_ variable from this process's environment)",
    )
    args = parser.parse_args()
    settings = dict(item.partition("=")[::2] for item in args.env)
    if bad := [key for key in settings if not key.startswith("ORQEN_")]:
        parser.error(f"--env takes ORQEN_ settings only, not {', '.join(bad)}")
    levels = [int(level) for level in args.concurrency.split(",")]
    asyncio.run(run(args.requests, levels, args.peer, args.tools, args.cpu, args.gc, settings))


if __name__ == "__main__":
    main()
