"""`make soak`: the whole stack at a steady rate for a long time, through all three ingresses.

Requests go out at a fixed rate (open loop: a slow answer never slows the sending down) and
cycle through the OpenAI, Anthropic and Bedrock formats, streaming and not, each with a tool
list (so the optimizer plans every one) and a session id. After a warm-up, every second, each
service's resident memory and open file descriptors (its process and any children) are sampled.

Limits (a broken one makes `make soak` exit non-zero):
- resident memory of each service grows at most 10% from the end of the warm-up to the end;
- open file descriptors do not grow: the last slice's lowest count is at most FD_SLACK above the
  first slice's highest (the count moves with the connections in flight, and a pool may keep one
  more connection after a burst; a leak lifts the whole slice by about one per leaking request);
- no error: every request answered 200 and read to its end;
- p99 stays stable: the last slice's p99 is at most twice the first measured slice's;
- nothing lost: accounting and billing each count exactly the requests of the run.

`make test` runs the same code for 60 seconds (tests-e2e/tests/test_soak.py), asserting on
memory, descriptors, errors and records, not on latency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from process_usage import Usage, sample

from chaos.table import Row, format_table

MEMORY_GROWTH_LIMIT = 0.10
FD_SLACK = 4
P99_STABILITY_FACTOR = 2.0
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1%3A0"
# A dozen tools: enough that the optimizer plans each request and forwards a subset.
TOOL_NAMES = (
    "get_weather",
    "get_time",
    "search_flights",
    "book_hotel",
    "convert_currency",
    "translate_text",
    "send_email",
    "create_event",
    "lookup_stock",
    "find_restaurant",
    "track_package",
    "set_reminder",
)
QUESTION = "What is the weather in Paris today?"


# --- the requests ---------------------------------------------------------------------------------------------------


def _schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"query": {"type": "string", "description": f"What {name} needs."}}}


def request_for(n: int, edge: str, api_key: str) -> tuple[str, dict[str, str], bytes]:
    """The n-th request of the run: (url, headers, body), cycling through ingress and streaming."""
    ingress = ("openai", "anthropic", "bedrock")[n % 3]
    stream = (n // 3) % 2 == 1
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {api_key}",
        "x-orqen-session-id": f"soak-{n % 50}",
    }
    describe = [(name, f"{name.replace('_', ' ')}.") for name in TOOL_NAMES]
    if ingress == "openai":
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 64,
            "tools": [
                {"type": "function", "function": {"name": n_, "description": d, "parameters": _schema(n_)}}
                for n_, d in describe
            ],
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return f"{edge}/v1/chat/completions", headers, orjson.dumps(body)
    if ingress == "anthropic":
        body = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [{"name": n_, "description": d, "input_schema": _schema(n_)} for n_, d in describe],
            "stream": stream,
        }
        return f"{edge}/v1/messages", headers | {"anthropic-version": "2023-06-01"}, orjson.dumps(body)
    body = {
        "messages": [{"role": "user", "content": [{"text": QUESTION}]}],
        "inferenceConfig": {"maxTokens": 64},
        "toolConfig": {
            "tools": [
                {"toolSpec": {"name": n_, "description": d, "inputSchema": {"json": _schema(n_)}}} for n_, d in describe
            ]
        },
    }
    operation = "converse-stream" if stream else "converse"
    return f"{edge}/model/{BEDROCK_MODEL}/{operation}", headers, orjson.dumps(body)


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (seconds into the run), how long until its last byte, and what failed.

    `error` is empty for a 200 read to its end, else the status code or the transport error's name.
    """

    sent_at: float
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


async def send(client: httpx.AsyncClient, n: int, edge: str, api_key: str, sent_at: float) -> Outcome:
    url, headers, body = request_for(n, edge, api_key)
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, headers=headers, content=body) as response:
            async for _ in response.aiter_raw():
                pass
            error = "" if response.status_code == 200 else str(response.status_code)
    except httpx.HTTPError as err:
        error = type(err).__name__
    return Outcome(sent_at, time.perf_counter() - started, error)


# --- the report -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceReport:
    name: str
    rss_after_warmup: int
    rss_end: int
    # Highest count in the first measured slice, lowest in the last.
    fds_first_slice_max: int
    fds_last_slice_min: int

    @property
    def memory_growth(self) -> float:
        return self.rss_end / self.rss_after_warmup - 1

    @property
    def fds_grew(self) -> bool:
        return self.fds_last_slice_min > self.fds_first_slice_max + FD_SLACK


@dataclass(frozen=True)
class SliceReport:
    start: float
    end: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass
class SoakReport:
    seconds: float
    rate: float
    warmup: float
    requests: int
    errors: int
    # How many failed each way: status code or transport error.
    error_kinds: dict[str, int]
    services: list[ServiceReport]
    slices: list[SliceReport]
    # Requests answered 200 and how many of them accounting and billing recorded.
    answered: int = 0
    recorded: dict[str, int] = field(default_factory=dict)

    @property
    def records_lost(self) -> int:
        return sum(abs(self.answered - count) for count in self.recorded.values())

    def broken_limits(self) -> list[str]:
        broken = [
            f"{s.name}: resident memory grew {s.memory_growth:.1%} (limit {MEMORY_GROWTH_LIMIT:.0%})"
            for s in self.services
            if s.memory_growth > MEMORY_GROWTH_LIMIT
        ]
        broken += [
            f"{s.name}: open file descriptors grew from at most {s.fds_first_slice_max} to at least "
            f"{s.fds_last_slice_min}"
            for s in self.services
            if s.fds_grew
        ]
        if self.errors:
            broken.append(f"{self.errors} of {self.requests} requests failed")
        if self.records_lost:
            broken.append(f"records: {self.answered} answered 200, recorded {self.recorded}")
        if self.p99_unstable:
            broken.append(
                f"p99 unstable: {self.slices[-1].p99_ms:.0f} ms in the last slice, "
                f"{self.slices[0].p99_ms:.0f} ms in the first"
            )
        return broken

    @property
    def p99_unstable(self) -> bool:
        return len(self.slices) > 1 and self.slices[-1].p99_ms > P99_STABILITY_FACTOR * self.slices[0].p99_ms

    def row(self) -> Row:
        """The soak as one row of the fault table."""
        first, last = self.slices[0], self.slices[-1]
        saw = (
            f"{self.errors} errors in {self.requests} requests; p99 {first.p99_ms:.0f} ms first slice, "
            f"{last.p99_ms:.0f} ms last"
        )
        return Row(f"soak, {self.seconds / 60:.0f} min at {self.rate:g} req/s", saw, self.records_lost, None)

    def render(self) -> str:
        mib = 1024 * 1024
        lines = [
            f"soak: {self.seconds:.0f} s at {self.rate:g} req/s ({self.warmup:.0f} s warm-up), "
            f"{self.requests} requests, {self.errors} errors {self.error_kinds or ''}, {self.answered} answered 200, "
            f"recorded {self.recorded}",
            "",
            "| service | RSS after warm-up | RSS at end | growth | fds first slice (max) | fds last slice (min) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.name} | {s.rss_after_warmup / mib:.1f} MiB | {s.rss_end / mib:.1f} MiB | {s.memory_growth:+.1%} "
            f"| {s.fds_first_slice_max} | {s.fds_last_slice_min} |"
            for s in self.services
        ]
        lines += ["", "| slice | requests | errors | p50 | p99 |", "|---|---|---|---|---|"]
        lines += [
            f"| {s.start:.0f}-{s.end:.0f} s | {s.requests} | {s.errors} | {s.p50_ms:.1f} ms | {s.p99_ms:.1f} ms |"
            for s in self.slices
        ]
        return "\n".join(lines)


def _slice_report(outcomes: list[Outcome], start: float, end: float) -> SliceReport:
    inside = [o for o in outcomes if start <= o.sent_at < end]
    latencies = sorted(o.seconds * 1000 for o in inside if o.ok) or [0.0]
    p50, p99 = statistics.median(latencies), latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return SliceReport(start, end, len(inside), sum(not o.ok for o in inside), p50, p99)


def _service_report(name: str, usage: list[Usage], warmup: float, first_end: float, last_start: float) -> ServiceReport:
    measured = [u for u in usage if u.at >= warmup]
    first = [u.fds for u in measured if u.at < first_end]
    last = [u.fds for u in measured if u.at >= last_start]
    return ServiceReport(name, measured[0].rss, measured[-1].rss, max(first), min(last))


# --- the run --------------------------------------------------------------------------------------------------------


async def soak(
    edge: str, api_key: str, pids: Mapping[str, int], *, seconds: float, rate: float, warmup: float, slices: int
) -> SoakReport:
    """Drive the running stack at `rate` requests/s for `seconds` and measure its services.

    The first `warmup` seconds fill caches and pools and are not measured; the rest is cut
    into `slices` equal slices for the latency percentiles and the descriptor comparison.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    usage: dict[str, list[Usage]] = {name: [] for name in pids}
    outcomes: list[Outcome] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            at = loop.time() - start
            for name, pid in pids.items():
                usage[name].append(sample(pid, at))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=1.0)

    async def one(n: int, sent_at: float) -> None:
        outcomes.append(await send(client, n, edge, api_key, sent_at))

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        watcher = asyncio.create_task(watch())
        async with asyncio.TaskGroup() as requests:
            n = 0
            while (now := loop.time() - start) < seconds:
                requests.create_task(one(n, now))
                n += 1
                await asyncio.sleep(max(0.0, n / rate - (loop.time() - start)))
        done.set()
        await watcher
        # The last sample after the last answer: the end of the run.
        at = loop.time() - start
        for name, pid in pids.items():
            usage[name].append(sample(pid, at))

    bounds = [warmup + (seconds - warmup) * i / slices for i in range(slices + 1)]
    slice_reports = [_slice_report(outcomes, lo, hi) for lo, hi in itertools.pairwise(bounds)]
    services = [_service_report(name, usage[name], warmup, bounds[1], bounds[-2]) for name in pids]
    return SoakReport(
        seconds=seconds,
        rate=rate,
        warmup=warmup,
        requests=len(outcomes),
        errors=sum(not o.ok for o in outcomes),
        error_kinds=dict(collections.Counter(o.error for o in outcomes if o.error)),
        services=services,
        slices=slice_reports,
        answered=sum(o.ok for o in outcomes),
    )


async def count_records(edge: str, api_key: str, expected: int, *, wait: float = 60.0) -> dict[str, int]:
    """How many requests of the key's account accounting and billing have recorded, once they stop changing.

    Both consume the request events asynchronously: wait until each reaches `expected`, or
    until `wait` seconds have passed (then report what they have).
    """
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=edge, headers={"authorization": f"Bearer {api_key}"}, timeout=30) as http:
        deadline = time.monotonic() + wait
        while True:
            summary = (await http.get("/v1/account/usage/summary")).json()
            billing = (await http.get("/v1/account/billing")).json()
            counts = {"accounting": int(summary["requests"]), "billing": int(billing["requests"])}
            if all(c >= expected for c in counts.values()) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.5)


async def soak_and_count(
    edge: str, api_key: str, pids: Mapping[str, int], *, seconds: float, rate: float, warmup: float, slices: int
) -> SoakReport:
    """The soak on a fresh account's key, and the records accounting and billing made of it."""
    report = await soak(edge, api_key, pids, seconds=seconds, rate=rate, warmup=warmup, slices=slices)
    report.recorded = await count_records(edge, api_key, report.answered)
    return report


async def _full_run(minutes: float, rate: float, warmup: float, slices: int) -> int:
    # Imported here: the test imports this module inside a running stack of its own.
    from accounts import new_account_key
    from bench.latency import fake_servers
    from harness import stack_env
    from orqen_stack.config import StackConfig
    from orqen_stack.supervisor import Stack

    with fake_servers() as urls, tempfile.TemporaryDirectory(prefix="orqen-soak-") as home:
        env = stack_env(urls, Path(home), f"soak{os.getpid()}")
        # Its own embedded Postgres, Redis and NATS, never the machine's shared servers.
        for name in ("DATABASE", "REDIS", "NATS"):
            env.pop(f"ORQEN_{name}_URL", None)
        stack = Stack(StackConfig.from_env(env))
        info = await stack.start()
        try:
            key = await new_account_key(stack, f"soak-{os.getpid()}")
            report = await soak_and_count(
                info.edge_url, key, stack.pids(), seconds=minutes * 60, rate=rate, warmup=warmup, slices=slices
            )
        finally:
            await stack.stop()
    print(report.render())
    print()
    print(format_table([report.row()]))
    broken = report.broken_limits()
    for line in broken:
        print(f"LIMIT BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run, warm-up included")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds not measured at the start")
    parser.add_argument("--slices", type=int, default=10, help="time slices of the measured part")
    args = parser.parse_args()
    sys.exit(asyncio.run(_full_run(args.minutes, args.rate, args.warmup, args.slices)))


if __name__ == "__main__":
    main()
