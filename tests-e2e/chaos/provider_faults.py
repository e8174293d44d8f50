"""Provider faults through the whole stack: storms on the primary provider, a fallback chain, three SDKs.

One stack of its own (its own fake providers; Postgres, Redis and NATS embedded or from
ORQEN_TEST_*_URL) with the dispatch settings an operator runs, circuit breakers on, only
with a short cooldown so the run sees circuits close, and a 2 s attempt timeout so slow
answers count as slow. One account whose fallback chain reaches every provider. For each
fault kind and each provider in turn, that provider's fake is put under the storm while
requests for its model go through the OpenAI, Anthropic and Bedrock SDKs, streaming and
not; then the storm ends and the run waits until the provider answers again (its circuit
closed by the half-open trial call). Afterwards every request, answered or not, must be in
the request log exactly once, with its attempts.

`make chaos` prints `provider_fault_rows` in its table; the bounded version of the same run
is tests-e2e/tests/test_provider_faults.py. `python -m chaos.provider_faults --requests N`
(from tests-e2e/) runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from accounts import new_account_key
from chaos.sdk_calls import SDKS, Outcome, SdkClients
from chaos.table import Row, format_table
from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.scenario import Fault
from fakes.serve import BackgroundServer
from harness import ANTHROPIC_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER, OPENAI_KEY, stack_env
from orqen_stack.config import StackConfig, StackInfo
from orqen_stack.supervisor import Stack

ATTEMPT_TIMEOUT_S = 2.0
BREAKER_COOLDOWN_S = 1.0
# What dispatch runs with here; everything else is the default an operator gets.
DISPATCH_SETTINGS = {
    "ORQEN_BREAKER_THRESHOLD": "5",
    "ORQEN_BREAKER_COOLDOWN_SECONDS": str(BREAKER_COOLDOWN_S),
    "ORQEN_ATTEMPT_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT_S),
    "ORQEN_TOTAL_TIMEOUT_SECONDS": "60",
}
# The model each request asks for while its provider storms, and the account's fallback chain,
# which reaches every provider whichever one storms.
PRIMARY = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-opus-4-5",
    "bedrock": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
}
FALLBACK_CHAIN = ["claude-haiku-4-5", "bedrock/amazon.nova-micro-v1:0", "gpt-4.1-mini"]
CONCURRENCY = 16
RECOVERY_LIMIT_S = 30.0


@dataclass(frozen=True)
class FaultKind:
    """A storm as a provider's fake plays it, request after request."""

    name: str
    faults: tuple[Fault, ...]
    streams_only: bool = False  # a fault only a stream can have


KINDS = (
    FaultKind("429 storm with Retry-After: 1", (Fault(error_status=429, retry_after=1),)),
    FaultKind("429 storm without Retry-After", (Fault(error_status=429, retry_after=None),)),
    FaultKind("5xx burst (500, 502, 503, 529)", tuple(Fault(error_status=s) for s in (500, 502, 503, 529))),
    FaultKind(f"answers slower than the {ATTEMPT_TIMEOUT_S:g} s attempt timeout", (Fault(delay_seconds=5.0),)),
    FaultKind("connection reset before the answer", (Fault(drop=True),)),
    FaultKind("connection reset mid-stream", (Fault(stream_fault="broken"),), streams_only=True),
)


@dataclass
class FaultStack:
    """A running stack on fake providers whose faults the run controls."""

    info: StackInfo
    service_env: dict[str, str]
    fakes: dict[str, FakeOpenAI | FakeAnthropic | FakeBedrock]


@asynccontextmanager
async def fault_stack() -> AsyncIterator[FaultStack]:
    """The fake providers and a whole stack on them, with `DISPATCH_SETTINGS`."""
    fakes: dict[str, FakeOpenAI | FakeAnthropic | FakeBedrock] = {
        "openai": FakeOpenAI(OPENAI_KEY),
        "anthropic": FakeAnthropic(ANTHROPIC_KEY),
        "bedrock": FakeBedrock(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER),
    }
    # Outside pytest's tmp: concurrent pytest sessions reset its permissions under an embedded Postgres.
    home = Path(tempfile.mkdtemp(prefix="orqen-provider-faults-"))
    with (
        BackgroundServer(fakes["openai"].app()) as openai_server,
        BackgroundServer(fakes["anthropic"].app()) as anthropic_server,
        BackgroundServer(fakes["bedrock"].app()) as bedrock_server,
    ):
        urls = {"openai": openai_server.url, "anthropic": anthropic_server.url, "bedrock": bedrock_server.url}
        env = {**stack_env(urls, home, f"pf{os.getpid()}"), **DISPATCH_SETTINGS}
        stack = Stack(StackConfig.from_env(env))
        try:
            info = await stack.start()
            yield FaultStack(info, stack.service_env, fakes)
        finally:
            await stack.stop()
            shutil.rmtree(home, ignore_errors=True)


# --- The run ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """One fault kind on one provider: what the requests got, and what the circuit did."""

    kind: FaultKind
    provider: str
    outcomes: list[Outcome]
    circuit_during: str  # the provider's circuit in /v1/account/routing/models/status as the storm ends
    circuit_after: str  # once the provider answered again
    recovery_s: float | None  # from the storm's end until the provider answered again; None: it never did
    probes: list[Outcome]  # the requests that waited for it

    def __str__(self) -> str:
        recovered = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return (
            f"{self.kind.name} on {self.provider}: {_share(self.outcomes)} answered, "
            f"circuit {self.circuit_during} during, {self.circuit_after} after; answered again in {recovered}"
        )


@dataclass
class ProviderFaultReport:
    phases: list[Phase]
    # Each request id the run sent, with its entries in the request log (exactly one is right).
    log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def outcomes(self, *, streams_only: bool | None = None) -> list[Outcome]:
        """Every storm's requests (not the recovery probes); only those of one sort of fault kind if asked."""
        return [
            outcome
            for phase in self.phases
            if streams_only is None or phase.kind.streams_only == streams_only
            for outcome in phase.outcomes
        ]

    def all_requests(self) -> list[Outcome]:
        return [o for phase in self.phases for o in (*phase.outcomes, *phase.probes)]

    def records_lost(self, outcomes: Sequence[Outcome]) -> int:
        """Answered requests missing from the request log or in it more than once."""
        return sum(1 for o in outcomes if o.ok and len(self.log.get(o.request_id, ())) != 1)

    def answered_by_fallback(self, outcomes: Sequence[Outcome]) -> int:
        entries = (self.log.get(o.request_id) for o in outcomes if o.ok)
        return sum(1 for found in entries if found and found[0]["route_reason"] == "fallback")

    def summary(self) -> str:
        """The success counts a reader wants first, one line each."""
        every = self.outcomes()
        before = self.outcomes(streams_only=False)
        mid = self.outcomes(streams_only=True)
        cut = [o for o in mid if not o.ok]
        return "\n".join(
            [
                f"provider faults: {_share(every)} of the requests made during the storms answered",
                f"  faults before the first byte (retried, then the fallback chain): {_share(before)} answered",
                f"  resets mid-stream (never retried after the first byte): {_share(mid)} answered, "
                f"{len(cut):,} cut by an in-stream error in the SDK's shape",
            ]
        )

    def rows(self) -> list[Row]:
        """One table row per fault kind, all providers together."""
        rows = []
        for kind in KINDS:
            phases = [p for p in self.phases if p.kind == kind]
            outcomes = [o for p in phases for o in p.outcomes]
            ok = sum(o.ok for o in outcomes)
            seconds = sorted(o.seconds for o in outcomes)
            saw = (
                f"{ok:,} of {len(outcomes):,} answered ({self.answered_by_fallback(outcomes):,} by a fallback), "
                f"p50 {_quantile(seconds, 0.5):.2f} s, p99 {_quantile(seconds, 0.99):.2f} s"
            )
            if failed := [o for o in outcomes if not o.ok]:
                shaped = sum(o.sdk_shaped for o in failed)
                saw += f"; {len(failed):,} failed, {shaped:,} of them with an error in their SDK's shape"
            if spliced := sum(not o.coherent for o in outcomes):
                saw += f"; {spliced:,} answers spliced or repeated"
            saw += "; circuit " + _circuit_story(phases)
            recoveries = [p.recovery_s for p in phases]
            recovery = None if None in recoveries else max(r for r in recoveries if r is not None)
            rows.append(Row(f"provider {kind.name}", saw, self.records_lost(outcomes), recovery))
        return rows


def _circuit_story(phases: Sequence[Phase]) -> str:
    opened = any(p.circuit_during != "closed" for p in phases)
    closed = all(p.circuit_after == "closed" for p in phases)
    if not opened:
        return "stayed closed" if closed else "did not close"
    return "opened, then closed" if closed else "opened and did not close"


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0.0


async def run_provider_faults(stack: FaultStack, requests: int, concurrency: int = CONCURRENCY) -> ProviderFaultReport:
    """About `requests` requests under every fault kind on every provider (at least one per SDK and mode),
    `concurrency` at a time."""
    key = await new_account_key(stack, f"provider-faults-{uuid.uuid4().hex[:8]}")
    run_id = uuid.uuid4().hex[:8]
    per_phase = max(2 * len(SDKS), requests // (len(KINDS) * len(PRIMARY)))
    async with httpx.AsyncClient(
        base_url=stack.info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        chain = await http.put("/v1/account/routing/preferences", json={"fallback_models": FALLBACK_CHAIN})
        chain.raise_for_status()
        with _bedrock_key(key), ThreadPoolExecutor(concurrency) as pool:
            clients = SdkClients(stack.info.edge_url, stack.info.tls_url, stack.info.cert_path, key, concurrency)
            sender = _Sender(clients, pool, run_id)
            phases = []
            for kind in KINDS:
                for provider in PRIMARY:
                    phase = await _phase(stack, http, sender, kind, provider, per_phase)
                    phases.append(phase)
                    print(f"provider faults: {phase}", flush=True)  # a long run shows it is moving
        report = ProviderFaultReport(phases)
        report.log = await _request_log(http, {o.request_id for o in report.all_requests()})
    return report


async def provider_fault_rows(requests: int) -> list[Row]:
    """The provider-fault rows of `make chaos`'s table, for about `requests` requests; prints the success counts."""
    async with fault_stack() as stack:
        report = await run_provider_faults(stack, requests)
    print(report.summary())
    return report.rows()


class _Sender:
    """Sends asks from a pool of threads (the SDKs are synchronous), each with a request id of this run."""

    def __init__(self, clients: SdkClients, pool: ThreadPoolExecutor, run_id: str) -> None:
        self._clients, self._pool, self._run_id = clients, pool, run_id
        self._sent = 0

    async def send(self, asks: Sequence[tuple[str, str, bool]]) -> list[Outcome]:
        """(sdk, model, stream) asks, all at once up to the pool's size."""
        loop = asyncio.get_running_loop()
        calls = []
        for sdk, model, stream in asks:
            self._sent += 1
            request_id = f"pf-{self._run_id}-{self._sent}"
            # An answer of eight words, so a stream broken halfway has sent some text first.
            question = f"request {self._sent} through {sdk} alpha beta gamma"
            calls.append(loop.run_in_executor(self._pool, self._clients.ask, sdk, model, question, stream, request_id))
        return list(await asyncio.gather(*calls))


async def _phase(
    stack: FaultStack, http: httpx.AsyncClient, sender: _Sender, kind: FaultKind, provider: str, size: int
) -> Phase:
    fake, model = stack.fakes[provider], PRIMARY[provider]
    modes = (True,) if kind.streams_only else (False, True)
    combos = [(sdk, stream) for sdk in SDKS for stream in modes]
    fake.faults.storm(kind.faults)
    try:
        asks = [(sdk, model, stream) for sdk, stream in itertools.islice(itertools.cycle(combos), size)]
        outcomes = await sender.send(asks)
        circuit_during = await _circuit(http, model)
    finally:
        fake.faults.calm()
    calmed = time.monotonic()
    recovery_s, probes = None, []
    while time.monotonic() - calmed < RECOVERY_LIMIT_S:
        calls_before = len(fake.requests)
        probe = (await sender.send([("openai", model, False)]))[0]
        probes.append(probe)
        if probe.ok and len(fake.requests) > calls_before:  # the primary itself answered
            recovery_s = time.monotonic() - calmed
            break
        await asyncio.sleep(0.1)
    circuit_after = await _circuit(http, model)
    fake.requests.clear()  # what the fake saw is not looked at here; a long run must not keep it all
    return Phase(kind, provider, outcomes, circuit_during, circuit_after, recovery_s, probes)


async def _circuit(http: httpx.AsyncClient, model: str) -> str:
    """The circuit of `model`'s provider, as the account API shows it."""
    response = await http.get("/v1/account/routing/models/status")
    response.raise_for_status()
    return str(next(m["circuit"] for m in response.json()["data"] if m["id"] == model))


async def _request_log(http: httpx.AsyncClient, request_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The account's request log entries of `request_ids`, once accounting has them all.

    Accounting may be behind after a long run: it is waited for as long as it catches up,
    until 30 s pass without a new entry.
    """
    found, progress = 0, time.monotonic()
    while True:
        entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
        cursor: str | None = ""
        while cursor is not None:
            response = await http.get("/v1/account/requests", params={"limit": 200, "cursor": cursor})
            response.raise_for_status()
            page = response.json()
            for entry in page["data"]:
                entries[entry["request_id"]].append(entry)
            cursor = page["next_cursor"]
        if len(entries) > found:
            found, progress = len(entries), time.monotonic()
        if request_ids <= entries.keys() or time.monotonic() - progress > 30:
            return {request_id: entries.get(request_id, []) for request_id in request_ids}
        await asyncio.sleep(1)


@contextmanager
def _bedrock_key(key: str) -> Iterator[None]:
    """botocore reads the Bedrock API key from AWS_BEARER_TOKEN_BEDROCK, as in an application."""
    previous = os.environ.get("AWS_BEARER_TOKEN_BEDROCK")
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_BEARER_TOKEN_BEDROCK", None)
        else:
            os.environ["AWS_BEARER_TOKEN_BEDROCK"] = previous


def _share(outcomes: Sequence[Outcome]) -> str:
    ok = sum(o.ok for o in outcomes)
    return f"{ok:,}/{len(outcomes):,} ({100 * ok / max(1, len(outcomes)):.2f}%)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Provider faults through the whole stack; prints the table.")
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(format_table(asyncio.run(provider_fault_rows(args.requests))))


if __name__ == "__main__":
    main()
