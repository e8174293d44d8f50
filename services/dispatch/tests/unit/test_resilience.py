"""Retries, fallbacks, deadlines and circuit breakers, with scripted providers and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from orqen_common.canonical import TokenUsage, unsupported
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import (
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    UserMessage,
)
from orqen_dispatch.providers.base import Completion, Credentials, StreamState, UpstreamError
from orqen_dispatch.resilience import (
    CIRCUIT_OPEN,
    AttemptRecord,
    CircuitBreakers,
    DispatchedStream,
    Dispatcher,
    DispatchFailedError,
    Next,
    ResilienceSettings,
    RetryPolicy,
    Target,
    after_failure,
    is_provider_fault,
)

CHAT = ChatRequest(model="m", messages=[UserMessage(content="hi")])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sleeps:
    """The injected sleep: records each wait and moves the fake clock on by it."""

    clock: FakeClock
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


HANG = "hang"  # a script step: the call never answers (until the per-attempt timeout)


@dataclass
class Stream:
    """A script step for `stream`: these chunks, then this error (if any)."""

    chunks: list[ChatCompletionChunk]
    error: UpstreamError | None = None


Step = UpstreamError | OrqenError | Completion | Stream | str


class ScriptedProvider:
    """A provider that plays one scripted step per call; each call takes `call_seconds` of fake time."""

    def __init__(self, name: str, steps: list[Step], clock: FakeClock, call_seconds: float = 0.0) -> None:
        self.name = name
        self.steps = list(steps)
        self.clock = clock
        self.call_seconds = call_seconds
        self.calls: list[str] = []
        self.called = asyncio.Event()
        self.closed_streams = 0

    async def _step(self, model: str) -> Step:
        self.calls.append(model)
        self.called.set()
        self.clock.now += self.call_seconds
        step = self.steps.pop(0)
        if step == HANG:
            await asyncio.Event().wait()
        if isinstance(step, (UpstreamError, OrqenError)):
            raise step
        return step

    async def complete(self, chat: ChatRequest, model: str, credentials: Credentials) -> Completion:
        step = await self._step(model)
        assert isinstance(step, Completion)
        return step

    async def stream(
        self, chat: ChatRequest, model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        try:
            step = await self._step(model)
            assert isinstance(step, Stream)
            state.status = 200
            for chunk in step.chunks:
                yield chunk
            if step.error is not None:
                raise step.error
            state.usage = TokenUsage(input=3, output=len(step.chunks))
        finally:
            self.closed_streams += 1


def ok(text: str = "hello") -> Completion:
    answer = ChatCompletion(id="c", created=0, model="m", choices=[Choice(message=AnswerMessage(content=text))])
    return Completion(body=answer, usage=TokenUsage(), status=200)


def chunks(*texts: str) -> list[ChatCompletionChunk]:
    return [
        ChatCompletionChunk(id="c", created=0, model="m", choices=[ChunkChoice(delta=Delta(content=t))]) for t in texts
    ]


def target(provider: ScriptedProvider, model: str = "m", reason: str = "requested") -> Target:
    return Target(provider, model, {}, reason)


@dataclass
class Harness:
    clock: FakeClock = field(default_factory=FakeClock)
    jitter: float = 0.5

    def __post_init__(self) -> None:
        self.sleeps = Sleeps(self.clock)

    def dispatcher(self, policy: RetryPolicy | None = None, breakers: CircuitBreakers | None = None) -> Dispatcher:
        breakers = breakers or CircuitBreakers(threshold=100, cooldown_s=60, clock=self.clock)
        return Dispatcher(
            policy or RetryPolicy(), breakers, sleep=self.sleeps, clock=self.clock, rng=lambda: self.jitter
        )

    def provider(self, name: str, *steps: Step, call_seconds: float = 0.0) -> ScriptedProvider:
        return ScriptedProvider(name, list(steps), self.clock, call_seconds)


@pytest.fixture
def h() -> Harness:
    return Harness()


def summary(attempts: list[AttemptRecord]) -> list[tuple[str, str, int, str]]:
    return [(a.provider, a.model, a.status, a.reason) for a in attempts]


def err(status: int, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(status, f"upstream said {status}", retry_after)


# --- The rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "next_step"),
    [
        *((s, Next.RETRY) for s in (0, 408, 409, 429, 500, 502, 503, 504, 529)),
        *((s, Next.NEXT_TARGET) for s in (401, 403, 404)),
        *((s, Next.RAISE) for s in (400, 405, 413, 415, 422)),
    ],
)
def test_what_each_status_leads_to(status: int, next_step: Next) -> None:
    assert after_failure(status) is next_step


def test_only_unreachable_timeouts_and_server_errors_are_the_providers_fault() -> None:
    assert all(is_provider_fault(s) for s in (0, 408, 500, 502, 503, 504, 529))
    assert not any(is_provider_fault(s) for s in (200, 400, 401, 404, 409, 413, 429))


# --- Completions: retries -----------------------------------------------------------------------


async def test_an_answer_at_the_first_call_is_one_attempt(h: Harness) -> None:
    provider = h.provider("openai", ok("first"))
    completion, answered, attempts = await h.dispatcher().complete([target(provider, "gpt")], CHAT)
    assert completion.body.choices[0].message.content == "first"
    assert answered.provider is provider
    assert summary(attempts) == [("openai", "gpt", 200, "requested")]
    assert attempts[0].error == "" and h.sleeps.waits == []


async def test_a_429_is_retried_after_its_retry_after(h: Harness) -> None:
    provider = h.provider("openai", err(429, retry_after=2), ok())
    _, _, attempts = await h.dispatcher().complete([target(provider)], CHAT)
    assert summary(attempts) == [("openai", "m", 429, "requested"), ("openai", "m", 200, "retry")]
    assert attempts[0].error == "upstream said 429"
    assert h.sleeps.waits == [2]


async def test_server_errors_back_off_exponentially_with_full_jitter_capped_at_the_max(h: Harness) -> None:
    policy = RetryPolicy(max_attempts=6, base_delay_s=1, max_delay_s=5)
    provider = h.provider("openai", *(err(s) for s in (500, 502, 503, 529, 0)), ok())
    _, _, attempts = await h.dispatcher(policy).complete([target(provider)], CHAT)
    assert [a.status for a in attempts] == [500, 502, 503, 529, 0, 200]
    assert [a.reason for a in attempts] == ["requested"] + ["retry"] * 5
    # rng() = 0.5 of min(5, 1 * 2^n)
    assert h.sleeps.waits == [0.5, 1.0, 2.0, 2.5, 2.5]


@pytest.mark.parametrize("jitter", [0.0, 0.999])
async def test_the_jitter_spans_zero_to_the_full_step(jitter: float) -> None:
    h = Harness(jitter=jitter)
    provider = h.provider("openai", err(500), ok())
    await h.dispatcher(RetryPolicy(base_delay_s=0.25)).complete([target(provider)], CHAT)
    assert h.sleeps.waits == [pytest.approx(jitter * 0.25)]


async def test_a_target_gets_at_most_max_attempts_then_the_fallback_is_tried(h: Harness) -> None:
    main = h.provider("anthropic", err(529), err(529), err(529))
    spare = h.provider("openai", ok("from the fallback"))
    completion, answered, attempts = await h.dispatcher().complete(
        [target(main, "claude"), target(spare, "gpt", "fallback")], CHAT
    )
    assert completion.body.choices[0].message.content == "from the fallback"
    assert answered.provider is spare and answered.reason == "fallback"
    assert summary(attempts) == [
        ("anthropic", "claude", 529, "requested"),
        ("anthropic", "claude", 529, "retry"),
        ("anthropic", "claude", 529, "retry"),
        ("openai", "gpt", 200, "fallback"),
    ]
    assert len(h.sleeps.waits) == 2  # between the calls to one target, none before the fallback


async def test_a_retry_after_longer_than_the_limit_moves_on_without_waiting(h: Harness) -> None:
    main = h.provider("anthropic", err(429, retry_after=120))
    spare = h.provider("openai", ok())
    _, answered, attempts = await h.dispatcher(RetryPolicy(max_retry_after_s=30)).complete(
        [target(main), target(spare, reason="fallback")], CHAT
    )
    assert answered.provider is spare
    assert [a.status for a in attempts] == [429, 200]
    assert h.sleeps.waits == []


# --- Completions: what is not retried -------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_the_callers_mistakes_are_raised_at_once_without_fallback(h: Harness, status: int) -> None:
    main = h.provider("openai", err(status))
    spare = h.provider("anthropic", ok())
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher().complete([target(main), target(spare, reason="fallback")], CHAT)
    assert (failed.value.status, failed.value.message) == (status, f"upstream said {status}")
    assert failed.value.target.provider is main
    assert summary(failed.value.attempts) == [("openai", "m", status, "requested")]
    assert spare.calls == []


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_key_permission_and_unknown_model_errors_move_on_to_the_fallback_without_retry(
    h: Harness, status: int
) -> None:
    main = h.provider("openai", err(status))
    spare = h.provider("anthropic", ok())
    _, answered, attempts = await h.dispatcher().complete([target(main), target(spare, reason="fallback")], CHAT)
    assert answered.provider is spare
    assert [a.status for a in attempts] == [status, 200]
    assert main.calls == ["m"] and h.sleeps.waits == []


async def test_when_every_target_fails_the_last_error_is_raised_with_every_attempt(h: Harness) -> None:
    main = h.provider("openai", err(500), err(500))
    spare = h.provider("anthropic", err(401))
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(RetryPolicy(max_attempts=2)).complete([target(main), target(spare, "c", "fallback")], CHAT)
    assert isinstance(failed.value, UpstreamError)
    assert (failed.value.status, failed.value.target.provider) == (401, spare)
    assert [a.status for a in failed.value.attempts] == [500, 500, 401]


async def test_the_raised_error_keeps_the_upstreams_retry_after(h: Harness) -> None:
    provider = h.provider("openai", err(503, retry_after=1), err(503, retry_after=4))
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(RetryPolicy(max_attempts=2)).complete([target(provider)], CHAT)
    assert (failed.value.status, failed.value.retry_after) == (503, 4)


async def test_a_translation_refusal_is_the_callers_error_and_raised_as_it_is(h: Harness) -> None:
    refusal = unsupported("top_k", "the openai provider")
    main = h.provider("openai", refusal)
    spare = h.provider("anthropic", ok())
    with pytest.raises(OrqenError) as raised:
        await h.dispatcher().complete([target(main), target(spare, reason="fallback")], CHAT)
    assert raised.value is refusal and spare.calls == []


async def test_no_targets_is_a_programming_error(h: Harness) -> None:
    with pytest.raises(ValueError, match="no targets"):
        await h.dispatcher().complete([], CHAT)


# --- Timeouts and the deadline -------------------------------------------------------------------


async def test_a_call_that_outlives_its_timeout_is_a_504_and_retried(h: Harness) -> None:
    provider = h.provider("openai", HANG, ok())
    _, _, attempts = await h.dispatcher(RetryPolicy(attempt_timeout_s=0.01)).complete([target(provider)], CHAT)
    assert [a.status for a in attempts] == [504, 200]
    assert "did not answer within 0.01s" in attempts[0].error


async def test_no_call_starts_once_the_total_deadline_has_passed(h: Harness) -> None:
    policy = RetryPolicy(max_attempts=3, total_timeout_s=100, base_delay_s=0.25)
    main = h.provider("openai", err(500), err(500), err(500), call_seconds=40)
    spare = h.provider("anthropic", ok())
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(policy).complete([target(main), target(spare, reason="fallback")], CHAT)
    # 40 s per call: the third call starts at ~80 s and ends past the deadline; no fallback.
    assert failed.value.status == 500
    assert len(main.calls) == 3 and spare.calls == []


async def test_a_wait_that_would_reach_the_deadline_is_not_made(h: Harness) -> None:
    policy = RetryPolicy(total_timeout_s=60, max_retry_after_s=30)
    provider = h.provider("openai", err(429, retry_after=25), err(429, retry_after=25), call_seconds=10)
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(policy).complete([target(provider)], CHAT)
    # t=10: wait 25 -> t=35, call -> t=45; waiting 25 more would pass t=60.
    assert h.sleeps.waits == [25]
    assert (failed.value.status, len(failed.value.attempts)) == (429, 2)


async def test_the_last_call_is_cut_short_at_the_total_deadline(h: Harness) -> None:
    policy = RetryPolicy(total_timeout_s=0.02, attempt_timeout_s=3600)
    provider = h.provider("openai", HANG)
    async with asyncio.timeout(5):  # a guard: without the deadline the call would hang for an hour
        with pytest.raises(DispatchFailedError) as failed:
            await h.dispatcher(policy).complete([target(provider)], CHAT)
    assert failed.value.status == 504


# --- Circuit breakers ----------------------------------------------------------------------------


def test_a_circuit_opens_after_consecutive_faults_and_lets_one_trial_through_after_the_cooldown() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(threshold=3, cooldown_s=30, clock=clock)
    for status in (500, 0):
        assert breakers.allow("openai")
        breakers.record("openai", status)
    assert breakers.state("openai") == "closed"
    breakers.record("openai", 504)
    assert breakers.state("openai") == "open" and not breakers.allow("openai")
    assert breakers.retry_in("openai") == 30
    clock.now += 30
    assert breakers.state("openai") == "half-open"
    assert breakers.allow("openai")  # the trial
    assert not breakers.allow("openai")  # only one at a time
    breakers.record("openai", 200)
    assert breakers.state("openai") == "closed" and breakers.allow("openai")
    assert breakers.state("anthropic") == "closed"  # one circuit per provider


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(threshold=1, cooldown_s=10, clock=clock)
    breakers.record("openai", 503)
    clock.now += 10
    assert breakers.allow("openai")
    breakers.record("openai", 503)
    assert breakers.state("openai") == "open" and breakers.retry_in("openai") == 10


def test_throttling_and_client_errors_show_the_provider_is_up() -> None:
    breakers = CircuitBreakers(threshold=2, cooldown_s=10, clock=FakeClock())
    for status in (500, 429, 500, 400, 500, 401):
        breakers.record("openai", status)
    assert breakers.state("openai") == "closed"


def test_a_released_trial_lets_the_next_call_try() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(threshold=1, cooldown_s=10, clock=clock)
    breakers.record("openai", 500)
    clock.now += 10
    assert breakers.allow("openai")
    breakers.release("openai")
    assert breakers.allow("openai")


async def test_an_open_circuit_is_skipped_and_recorded_as_a_503(h: Harness) -> None:
    breakers = CircuitBreakers(threshold=1, cooldown_s=60, clock=h.clock)
    breakers.record("anthropic", 500)
    main = h.provider("anthropic")
    spare = h.provider("openai", ok())
    _, answered, attempts = await h.dispatcher(breakers=breakers).complete(
        [target(main, "claude"), target(spare, "gpt", "fallback")], CHAT
    )
    assert answered.provider is spare and main.calls == []
    assert summary(attempts) == [("anthropic", "claude", 503, "requested"), ("openai", "gpt", 200, "fallback")]
    assert attempts[0].error == CIRCUIT_OPEN


async def test_when_every_circuit_is_open_a_503_says_when_to_come_back(h: Harness) -> None:
    breakers = CircuitBreakers(threshold=1, cooldown_s=60, clock=h.clock)
    breakers.record("openai", 500)
    h.clock.now += 15
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(breakers=breakers).complete([target(h.provider("openai"))], CHAT)
    assert (failed.value.status, failed.value.retry_after) == (503, 45)
    assert CIRCUIT_OPEN in failed.value.message


async def test_a_circuit_that_opens_during_retries_stops_them_and_the_upstream_error_is_raised(
    h: Harness,
) -> None:
    breakers = CircuitBreakers(threshold=2, cooldown_s=60, clock=h.clock)
    provider = h.provider("openai", err(500), err(502), ok())
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher(breakers=breakers).complete([target(provider)], CHAT)
    assert [(a.status, a.error) for a in failed.value.attempts][-1] == (503, CIRCUIT_OPEN)
    assert failed.value.status == 502  # what the provider said, not our own refusal
    assert len(provider.calls) == 2


async def test_a_cancelled_trial_frees_the_half_open_circuit(h: Harness) -> None:
    breakers = CircuitBreakers(threshold=1, cooldown_s=10, clock=h.clock)
    breakers.record("openai", 500)
    h.clock.now += 10
    provider = h.provider("openai", HANG)
    call = asyncio.create_task(h.dispatcher(breakers=breakers).complete([target(provider)], CHAT))
    await provider.called.wait()
    assert not breakers.allow("openai")  # the trial is under way
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert breakers.allow("openai")


# --- Streams -------------------------------------------------------------------------------------


async def collect(stream: DispatchedStream) -> list[str]:
    return [c.choices[0].delta.content async for c in stream]


async def test_a_stream_is_retried_until_its_first_chunk(h: Harness) -> None:
    provider = h.provider("openai", err(503), Stream(chunks("a", "b")))
    state, attempts = StreamState(), list[AttemptRecord]()
    stream = h.dispatcher().stream([target(provider)], CHAT, state, attempts)
    assert await collect(stream) == ["a", "b"]
    assert stream.target is not None and stream.target.provider is provider
    assert summary(attempts) == [("openai", "m", 503, "requested"), ("openai", "m", 200, "retry")]
    assert (state.status, state.usage.output) == (200, 2)


async def test_a_stream_falls_back_to_the_next_target(h: Harness) -> None:
    main = h.provider("anthropic", err(500), err(500))
    spare = h.provider("openai", Stream(chunks("x")))
    attempts: list[AttemptRecord] = []
    stream = h.dispatcher(RetryPolicy(max_attempts=2)).stream(
        [target(main), target(spare, reason="fallback")], CHAT, StreamState(), attempts
    )
    assert await collect(stream) == ["x"]
    assert stream.target is not None and stream.target.provider is spare
    assert [a.reason for a in attempts] == ["requested", "retry", "fallback"]


async def test_an_error_after_the_first_chunk_is_raised_as_it_is_and_never_retried(h: Harness) -> None:
    broken = err(502)
    provider = h.provider("openai", Stream(chunks("a", "b"), error=broken), Stream(chunks("never")))
    attempts: list[AttemptRecord] = []
    received: list[str] = []
    with pytest.raises(UpstreamError) as raised:
        async for chunk in h.dispatcher().stream([target(provider)], CHAT, StreamState(), attempts):
            received.append(chunk.choices[0].delta.content)
    assert raised.value is broken and received == ["a", "b"]
    assert len(provider.calls) == 1
    assert [(a.status, a.error) for a in attempts] == [(502, "upstream said 502")]


async def test_a_stream_slow_to_start_is_timed_out_and_retried(h: Harness) -> None:
    provider = h.provider("openai", HANG, Stream(chunks("late")))
    attempts: list[AttemptRecord] = []
    stream = h.dispatcher(RetryPolicy(attempt_timeout_s=0.01)).stream([target(provider)], CHAT, StreamState(), attempts)
    assert await collect(stream) == ["late"]
    assert [a.status for a in attempts] == [504, 200]
    assert provider.closed_streams == 2  # the timed-out stream was closed too


async def test_a_failed_stream_attempt_leaves_nothing_in_the_state(h: Harness) -> None:
    provider = h.provider("openai", Stream([], error=err(503)), Stream(chunks("ok")))
    state = StreamState(usage=TokenUsage(input=99), status=500)
    await collect(h.dispatcher().stream([target(provider)], CHAT, state, []))
    assert (state.status, state.usage.input) == (200, 3)


async def test_a_stream_that_fails_everywhere_raises_with_every_attempt(h: Harness) -> None:
    provider = h.provider("openai", err(500), err(400))
    attempts: list[AttemptRecord] = []
    stream = h.dispatcher().stream([target(provider)], CHAT, StreamState(), attempts)
    with pytest.raises(DispatchFailedError) as failed:
        await collect(stream)
    assert failed.value.status == 400 and failed.value.attempts == attempts
    assert stream.target is None


async def test_closing_a_stream_early_closes_the_upstream_stream(h: Harness) -> None:
    provider = h.provider("openai", Stream(chunks("a", "b", "c")))
    attempts: list[AttemptRecord] = []
    stream = h.dispatcher().stream([target(provider)], CHAT, StreamState(), attempts)
    assert (await anext(stream)).choices[0].delta.content == "a"
    h.clock.now += 2
    await stream.aclose()
    assert provider.closed_streams == 1
    assert attempts[0].duration_ms == 2000


async def test_a_broken_stream_counts_against_the_providers_circuit(h: Harness) -> None:
    breakers = CircuitBreakers(threshold=2, cooldown_s=60, clock=h.clock)
    provider = h.provider("openai", Stream(chunks("a"), error=err(502)), Stream(chunks("a"), error=err(502)))
    dispatcher = h.dispatcher(breakers=breakers)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await collect(dispatcher.stream([target(provider)], CHAT, StreamState(), []))
    assert breakers.state("openai") == "open"


# --- Settings ------------------------------------------------------------------------------------


def test_the_settings_build_the_policy_and_the_breakers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORQEN_RETRY_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("ORQEN_RETRY_BASE_DELAY_SECONDS", "0.5")
    monkeypatch.setenv("ORQEN_ATTEMPT_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("ORQEN_TOTAL_TIMEOUT_SECONDS", "90")
    monkeypatch.setenv("ORQEN_BREAKER_THRESHOLD", "1")
    monkeypatch.setenv("ORQEN_BREAKER_COOLDOWN_SECONDS", "12")
    settings = ResilienceSettings()
    assert settings.retry_policy() == RetryPolicy(
        max_attempts=5, base_delay_s=0.5, attempt_timeout_s=30, total_timeout_s=90
    )
    clock = FakeClock()
    breakers = settings.circuit_breakers(clock)
    breakers.record("openai", 500)
    assert breakers.retry_in("openai") == 12


def test_the_defaults() -> None:
    settings = ResilienceSettings()
    assert settings.retry_policy() == RetryPolicy()
    assert (settings.breaker_threshold, settings.breaker_cooldown_seconds) == (5, 30.0)


def test_nonsense_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORQEN_RETRY_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="retry_max_attempts"):
        ResilienceSettings()


# --- Answers the caller streams itself (the proxy families) ------------------------------------


async def test_open_retries_a_replayable_request_and_settle_records_how_it_ended(h: Harness) -> None:
    provider = h.provider("p", err(503), ok())
    dispatcher, attempts = h.dispatcher(), []
    answer = await dispatcher.open([target(provider)], attempts, lambda t: t.provider.complete(CHAT, t.model, {}))
    h.clock.now += 2.0  # the answer streams for two seconds
    dispatcher.settle(answer, 502, "broke halfway")
    assert summary(attempts) == [("p", "m", 503, "requested"), ("p", "m", 502, "retry")]
    assert (attempts[-1].error, attempts[-1].duration_ms) == ("broke halfway", 2000.0)


async def test_a_request_that_cannot_be_replayed_gets_one_call(h: Harness) -> None:
    first, fallback = h.provider("p", err(503), ok()), h.provider("q", ok())
    attempts: list[AttemptRecord] = []
    with pytest.raises(DispatchFailedError) as failed:
        await h.dispatcher().open(
            [target(first), target(fallback)],
            attempts,
            lambda t: t.provider.complete(CHAT, t.model, {}),
            replayable=False,
        )
    assert failed.value.status == 503
    assert (first.calls, fallback.calls, h.sleeps.waits) == (["m"], [], [])
