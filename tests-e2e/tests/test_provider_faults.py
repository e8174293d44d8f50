"""Provider faults through the whole stack: the bounded version of `make chaos`'s provider-fault run.

The same code as the full run (tests-e2e/chaos/provider_faults.py), on a stack of its own
whose circuit breakers are on (the session stack keeps them off for the other tests).
"""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from chaos.provider_faults import KINDS, PRIMARY, FaultStack, ProviderFaultReport, fault_stack, run_provider_faults
from chaos.sdk_calls import SDKS

from accounts import new_account_key
from fakes.scenario import Fault
from harness import request_log_entry

# Enough for every fault kind on every provider through every SDK, streaming and not; fewer at
# a time than in a phase, so the last requests of a storm find the circuit open.
REQUESTS = 6 * len(KINDS) * len(PRIMARY)
CONCURRENCY = 4


@pytest.fixture(scope="module")
async def faults_stack() -> AsyncIterator[FaultStack]:
    async with fault_stack() as stack:
        yield stack


@pytest.fixture(scope="module")
async def report(faults_stack: FaultStack) -> ProviderFaultReport:
    """One run of every storm; each test below checks one promise of it."""
    report = await run_provider_faults(faults_stack, REQUESTS, CONCURRENCY)
    print(report.summary())
    return report


async def test_storms_on_the_primary_are_answered_by_the_fallback_chain(report: ProviderFaultReport) -> None:
    before_first_byte = report.outcomes(streams_only=False)
    # Every fault before the first byte is retried, then answered by the fallback chain.
    assert sum(o.ok for o in before_first_byte) >= 0.999 * len(before_first_byte)
    assert all(o.ok for o in before_first_byte), [o for o in before_first_byte if not o.ok]
    # Each SDK, streaming and not, went through every storm of every provider.
    for phase in report.phases:
        modes = {(o.sdk, o.stream) for o in phase.outcomes}
        assert {sdk for sdk, _ in modes} == set(SDKS), phase.kind.name
        assert {stream for _, stream in modes} == ({True} if phase.kind.streams_only else {False, True})
    # A client sees one whole answer or the start of one and an error in its SDK's shape: never two spliced.
    for outcome in report.all_requests():
        assert outcome.coherent and outcome.sdk_shaped, outcome
    # Every request, answered or not, is in the request log exactly once, with its attempts.
    for outcome in report.all_requests():
        entries = report.log[outcome.request_id]
        assert len(entries) == 1, outcome
        assert entries[0]["attempts"], entries[0]
        assert (entries[0]["status"] == 200) == outcome.ok, (entries[0], outcome)
    assert all(row.records_lost == 0 for row in report.rows())


async def test_the_circuit_opens_under_provider_faults_and_closes_after(report: ProviderFaultReport) -> None:
    for kind in KINDS:
        phases = [p for p in report.phases if p.kind == kind]
        skipped_in_kind = 0
        for phase in phases:
            requests = [*phase.outcomes, *phase.probes]
            attempts = [a for o in requests for a in report.log[o.request_id][0]["attempts"]]
            skipped = [a for a in attempts if a["error"] == "circuit open"]
            skipped_in_kind += len(skipped)
            if kind.faults[0].error_status == 429:
                # A 429 says the provider is up: its circuit stays closed, however long the storm.
                assert phase.circuit_during == "closed" and not skipped, (kind.name, phase.provider)
            else:
                assert phase.circuit_during in ("open", "half-open"), (kind.name, phase.provider)
                # Only the storming provider is skipped: the fallbacks on the others answer.
                assert {a["provider"] for a in skipped} <= {phase.provider}, (kind.name, phase.provider)
            # After the storm, a call the provider itself answers (the half-open trial) closes the circuit.
            assert phase.recovery_s is not None and phase.circuit_after == "closed", (kind.name, phase.provider)
            trial = report.log[phase.probes[-1].request_id][0]
            assert trial["attempts"][0]["status"] == 200 and trial["route_reason"] == "requested"
        if kind.faults[0].error_status != 429:
            # While open, the circuit's provider is skipped at once, as the requests' attempts show.
            assert skipped_in_kind, kind.name


async def test_a_stream_is_never_retried_after_its_first_byte(report: ProviderFaultReport) -> None:
    (kind,) = [k for k in KINDS if k.streams_only]
    cut = [o for p in report.phases if p.kind == kind for o in p.outcomes if not o.ok]
    assert cut, "no stream was cut: the fault did not happen"
    for outcome in cut:
        # Some text came, then an in-stream error in the SDK's shape.
        assert outcome.text and outcome.expected.startswith(outcome.text) and outcome.sdk_shaped, outcome
        # One call upstream: the one that broke after its first byte, no retry, no fallback.
        (attempt,) = report.log[outcome.request_id][0]["attempts"]
        assert attempt["status"] == 502 and attempt["reason"] == "requested", attempt


async def test_a_request_no_model_answers_is_recorded_with_every_attempt(faults_stack: FaultStack) -> None:
    # A fresh account: no fallback chain, so the failing model's error reaches the caller.
    key = await new_account_key(faults_stack, "no-fallbacks")
    client = openai.AsyncOpenAI(base_url=faults_stack.info.edge_url + "/v1", api_key=key, max_retries=0)
    model, fake = "gpt-4.1-nano", faults_stack.fakes["openai"]
    messages: Any = [{"role": "user", "content": "one two three four five six"}]
    throttled, cut = f"throttled-{uuid.uuid4().hex}", f"cut-{uuid.uuid4().hex}"
    try:
        fake.faults.storm([Fault(error_status=429, retry_after=None)], model)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model=model, messages=messages, extra_headers={"x-request-id": throttled}
            )
        fake.faults.storm([Fault(stream_fault="broken")], model)
        stream = await client.chat.completions.create(
            model=model, messages=messages, stream=True, extra_headers={"x-request-id": cut}
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    finally:
        fake.faults.calm()
    attempts = {
        throttled: [(model, 429, "requested"), (model, 429, "retry"), (model, 429, "retry")],
        cut: [(model, 502, "requested")],
    }
    for request_id, expected in attempts.items():
        entry = await request_log_entry(faults_stack.info.edge_url, key, request_id)
        assert entry["status"] != 200
        assert [(a["model"], a["status"], a["reason"]) for a in entry["attempts"]] == expected


async def test_the_models_status_shows_each_providers_circuit(faults_stack: FaultStack) -> None:
    key = await new_account_key(faults_stack, "circuits")
    async with httpx.AsyncClient(base_url=faults_stack.info.edge_url) as http:
        status = await http.get("/v1/account/routing/models/status", headers={"authorization": f"Bearer {key}"})
    models = status.json()["data"]
    assert {m["provider"] for m in models} >= set(PRIMARY)
    assert {m["circuit"] for m in models} <= {"closed", "open", "half-open"}
