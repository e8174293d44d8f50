"""Resilient dispatch: retries, fallback models and a circuit breaker per provider.

A request has one or more `Target`s: the model it asked for (or that an orqen/* rule
chose), then its fallbacks. The `Dispatcher` tries them in order, each up to
`RetryPolicy.max_attempts` calls, and returns the first answer. What happens after a
failed call depends on the upstream status:

- 408, 409, 429 and every 5xx (Anthropic's 529 included), and 0/502/504 (unreachable, a
  broken connection, a timeout): the same target is called again after a full-jitter
  exponential backoff, or after the upstream's Retry-After when it gave one. A
  Retry-After longer than `max_retry_after_s` is not waited for: the next target is
  tried instead. Once a target's attempts are spent, the next target is tried.
- 401, 403, 404: not retried, but the next target is tried. They are about this
  provider (its key, its permissions, whether it serves the model), and a fallback on
  another provider may well work.
- Any other 4xx (400, 413, 422, ...): the request itself is wrong and no other model
  would take it either; the error is raised at once.
- A provider whose circuit is open is not called at all: the skip is recorded as an
  attempt with status 503 and error "circuit open", and the next target is tried.
- A provider's translator refusing the request (an OrqenError, e.g. a feature it cannot
  express) is the caller's problem too: raised as it is, with no verdict on the circuit.

Two clocks bound the work: each call gets `attempt_timeout_s` (504 when it runs out), and
everything together gets `total_timeout_s`; when the next wait would reach that deadline,
or no time is left for another call, the last error is raised.

A target of a load-balanced model carries its deployment's slot (orqen_dispatch.balancer):
the slot, not the provider's circuit, decides whether the call may go (a deployment ejected,
probing or over its rate limit is skipped, recorded as an attempt that names it) and hears how
each call ended. A deployment that fails is ejected at once, so its retry goes to the next
deployment rather than back to it.

A stream is retried and falls back the same way, but only until its first chunk: after
that the caller has part of an answer, so an error is raised as it is. The per-call
timeout bounds the wait for the first chunk, not the whole stream. A request whose body
streams upstream as it arrives (a proxied upload, `open(..., replayable=False)`) is sent
once: its body is not kept to send again.

When no target answers, `DispatchFailedError` is raised: the last error an upstream
gave (status, message, Retry-After; a "circuit open" 503 only when open circuits
refused every call), the target that gave it and every attempt made.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import structlog
from pydantic import Field

from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import ChatCompletionChunk, ChatRequest
from orqen_common.settings import OrqenSettings
from orqen_dispatch.providers.base import Completion, Provider, StreamState, UpstreamError

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Random = Callable[[], float]
Chunk = ChatCompletionChunk
T = TypeVar("T")

CIRCUIT_OPEN = "circuit open"


class DeploymentGate(Protocol):
    """One request's use of a deployment of a load-balanced model (orqen_dispatch.balancer.DeploymentSlot)."""

    @property
    def name(self) -> str: ...

    async def admit(self) -> UpstreamError | None:
        """None when the call may go; otherwise why it is skipped (its message short: the attempt's error)."""
        ...

    def finish(self, status: int, retry_after: float | None = None) -> None: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """One model to try, and why it is tried."""

    provider: Provider
    model: str  # the name the provider expects
    credentials: Mapping[str, str]
    reason: str  # "requested", "fallback", or the reason of the orqen/* rule that chose it
    name: str = ""  # the model string as callers and the catalogue spell it ("bedrock/…")
    deployment: DeploymentGate | None = None  # set when the model is load-balanced

    @property
    def circuit(self) -> str:
        """The upstream whose health a breaker tracks: the provider, or the account's own endpoint of it.

        An account's OpenAI-compatible provider lives at the base URL it saved: one account's
        dead endpoint must not open the circuit of another account's provider of that name.
        """
        base_url = self.credentials.get("base_url")
        return f"{self.provider.name} at {base_url}" if base_url else self.provider.name


@dataclass(slots=True)
class AttemptRecord:
    """One call to a provider (or one skipped for an open circuit); the fields of dispatch.proto's Attempt."""

    provider: str
    model: str
    status: int  # the upstream's HTTP status; 0 when it could not be reached
    error: str  # empty when the call answered
    duration_ms: float
    reason: str  # the target's reason for its first call, "retry" for the next ones
    deployment: str = ""  # the deployment of a load-balanced model that took (or skipped) the call


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries (see the module docstring)."""

    max_attempts: int = 3  # calls to one target, the first one included
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    attempt_timeout_s: float = 600.0
    total_timeout_s: float = 900.0
    max_retry_after_s: float = 30.0  # a longer Retry-After moves on to the next target

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.attempt_timeout_s <= 0 or self.total_timeout_s <= 0:
            raise ValueError("a retry policy needs at least one attempt and positive timeouts")


class DispatchFailedError(UpstreamError):
    """No target answered: the last upstream error, the target that gave it, every attempt made."""

    def __init__(self, last: UpstreamError, target: Target, attempts: Sequence[AttemptRecord]) -> None:
        super().__init__(last.status, last.message, last.retry_after)
        self.target = target
        self.attempts = list(attempts)


# --- What a failure means ---------------------------------------------------------------------


class Next(enum.Enum):
    """What to do after a call failed with some upstream status."""

    RETRY = "retry"  # call the same target again (if attempts and time are left), then move on
    NEXT_TARGET = "next target"  # this provider cannot serve it; a fallback may
    RAISE = "raise"  # the caller's mistake: no model would take it


def after_failure(status: int) -> Next:
    """The rule of the module docstring for one upstream status."""
    if status in (0, 408, 409, 429) or 500 <= status <= 599:
        return Next.RETRY
    if status in (401, 403, 404):
        return Next.NEXT_TARGET
    return Next.RAISE


def is_provider_fault(status: int) -> bool:
    """Whether a status counts against the provider's circuit.

    Unreachable, timeouts and server errors do; a 429 does not (the provider is up and
    telling us to slow down), nor does any other client error.
    """
    return status in (0, 408) or status >= 500


# --- Circuit breakers -------------------------------------------------------------------------


@dataclass(slots=True)
class _Circuit:
    consecutive_failures: int = 0
    opened_at: float | None = None  # None while closed
    trial_running: bool = False  # half-open: the one call allowed through is under way


class CircuitBreakers:
    """One circuit per upstream (`Target.circuit`), shared by every request of the process.

    Closed: calls go through; `threshold` provider faults in a row open it. Open: calls are
    refused for `cooldown_s`. Then half-open: one trial call goes through; if the provider
    answers the circuit closes, if it fails again the circuit opens for another cooldown.
    Any answer that is not a provider fault (even a 400 or a 429) shows the provider is up.
    """

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        if threshold < 1 or cooldown_s < 0:
            raise ValueError("a circuit breaker needs a threshold of at least 1 and a cooldown >= 0")
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, provider: str) -> Literal["closed", "open", "half-open"]:
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "open" if self._clock() < circuit.opened_at + self._cooldown_s else "half-open"

    def allow(self, provider: str) -> bool:
        """Whether a call may go now; in half-open, True only for the one trial call.

        Every allowed call must end in `record` or, if it ended without an answer either
        way (cancelled, refused before sending), `release`.
        """
        state = self.state(provider)
        if state == "closed":
            return True
        circuit = self._circuits[provider]
        if state == "open" or circuit.trial_running:
            return False
        circuit.trial_running = True
        return True

    def retry_in(self, provider: str) -> float:
        """Seconds until the circuit lets a trial call through (0 unless open)."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.opened_at is None:
            return 0.0
        return max(0.0, circuit.opened_at + self._cooldown_s - self._clock())

    def record(self, provider: str, status: int) -> None:
        """The outcome of an allowed call: the upstream status it ended with (200 when it answered)."""
        circuit = self._circuits.setdefault(provider, _Circuit())
        if not is_provider_fault(status):
            if circuit.opened_at is not None:
                log.info("circuit closed", provider=provider)
            self._circuits[provider] = _Circuit()
            return
        if circuit.opened_at is not None:
            if circuit.trial_running:  # the trial failed: another cooldown
                circuit.opened_at, circuit.trial_running = self._clock(), False
                log.warning("circuit re-opened", provider=provider, status=status, cooldown_s=self._cooldown_s)
            return  # a call that started before the circuit opened says nothing new
        circuit.consecutive_failures += 1
        if circuit.consecutive_failures >= self._threshold:
            circuit.opened_at = self._clock()
            log.warning(
                "circuit opened",
                provider=provider,
                status=status,
                failures=circuit.consecutive_failures,
                cooldown_s=self._cooldown_s,
            )

    def release(self, provider: str) -> None:
        """An allowed call ended without telling whether the provider works: free the trial slot."""
        circuit = self._circuits.get(provider)
        if circuit is not None:
            circuit.trial_running = False


# --- The dispatcher ---------------------------------------------------------------------------


@dataclass(slots=True)
class Answer(Generic[T]):
    """The call that answered: its result, its target, its attempt record and when it started."""

    result: T
    target: Target
    record: AttemptRecord
    started: float  # the dispatcher's clock when the answering call started


@dataclass(slots=True)
class _OpenedStream:
    first: Chunk | None  # None when the provider ended the stream without any chunk
    rest: AsyncIterator[Chunk]


class Dispatcher:
    """Calls targets in order with retries, timeouts and circuit breakers (see the module docstring).

    `sleep`, `clock` and `rng` are injectable so tests control time and jitter; the
    per-call timeout itself runs on the event loop's clock.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        breakers: CircuitBreakers,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: Random = random.random,
    ) -> None:
        self._policy = policy
        self._breakers = breakers
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    @property
    def breakers(self) -> CircuitBreakers:
        """The circuits this dispatcher keeps, one per upstream."""
        return self._breakers

    async def complete(
        self, targets: Sequence[Target], chat: ChatRequest
    ) -> tuple[Completion, Target, list[AttemptRecord]]:
        """The first completion any target gives; `DispatchFailedError` when none does."""
        attempts: list[AttemptRecord] = []

        async def call(target: Target) -> Completion:
            return await target.provider.complete(chat, target.model, target.credentials)

        answer = await self._first_answer(targets, attempts, call, lambda completion: completion.status)
        self._finish(answer.target, answer.record.status)
        return answer.result, answer.target, attempts

    async def open(
        self,
        targets: Sequence[Target],
        attempts: list[AttemptRecord],
        call: Callable[[Target], Awaitable[T]],
        *,
        replayable: bool = True,
    ) -> Answer[T]:
        """The first `call` that answers, after the retries and fallbacks the rules allow.

        For callers that stream the answer themselves (the proxy families): once they know
        how it ended they must `settle` it. A request whose body cannot be sent twice (a
        streamed upload: `replayable=False`) gets one call, whatever the rules would allow.
        """
        return await self._first_answer(targets, attempts, call, lambda _: 200, max_calls=None if replayable else 1)

    def settle(self, answer: Answer[Any], status: int, error: str = "") -> None:
        """Record how an answer from `open` ended: its circuit, its attempt's status, error and duration."""
        answer.record.status, answer.record.error = status, error
        answer.record.duration_ms = self._ms(answer.started)
        self._finish(answer.target, status)

    def stream(
        self, targets: Sequence[Target], chat: ChatRequest, state: StreamState, attempts: list[AttemptRecord]
    ) -> DispatchedStream:
        """The chunks of the first target whose stream starts; see `DispatchedStream`."""
        return DispatchedStream(lambda answered_by: self._stream(targets, chat, state, attempts, answered_by))

    async def _stream(
        self,
        targets: Sequence[Target],
        chat: ChatRequest,
        state: StreamState,
        attempts: list[AttemptRecord],
        answered_by: Callable[[Target], None],
    ) -> AsyncGenerator[Chunk, None]:
        async def open_stream(target: Target) -> _OpenedStream:
            """Start the target's stream and wait for its first chunk: the part a retry may redo."""
            state.usage, state.status = TokenUsage(), 0  # nothing of a failed attempt stays
            chunks = target.provider.stream(chat, target.model, target.credentials, state)
            try:
                return _OpenedStream(await chunks.__anext__(), chunks)
            except StopAsyncIteration:
                return _OpenedStream(None, chunks)
            except BaseException:
                await _close(chunks)
                raise

        answer = await self._first_answer(targets, attempts, open_stream, lambda _: state.status or 200)
        answered_by(answer.target)
        opened, record = answer.result, answer.record
        try:
            if opened.first is not None:
                yield opened.first
            async for chunk in opened.rest:
                yield chunk
        except UpstreamError as err:
            # Part of the answer is out, so no retry; but the provider failed, and a provider
            # that keeps breaking its streams should open its circuit.
            record.status, record.error = err.status, err.message
            raise
        finally:
            record.duration_ms = self._ms(answer.started)
            self._finish(answer.target, record.status)
            await _close(opened.rest)

    async def _first_answer(
        self,
        targets: Sequence[Target],
        attempts: list[AttemptRecord],
        call: Callable[[Target], Awaitable[T]],
        status_of: Callable[[T], int],
        max_calls: int | None = None,
    ) -> Answer[T]:
        """The first call that answers, after the retries and fallbacks the rules allow.

        Failed calls are recorded in the circuits; the answering one is left for the caller
        to record, once it knows how the answer ended.
        """
        if not targets:
            raise ValueError("nothing to dispatch to: no targets")
        policy = self._policy
        deadline = self._clock() + policy.total_timeout_s
        last_error: tuple[UpstreamError, Target] | None = None  # of a call that was made
        last_skip: tuple[UpstreamError, Target] | None = None  # of a call a circuit or deployment refused

        def failed() -> DispatchFailedError:
            error, target = last_error or last_skip or (UpstreamError(504, "no time left to call a model"), targets[0])
            return DispatchFailedError(error, target, attempts)

        calls = 0
        for target in targets:
            name = target.provider.name
            deployment = target.deployment.name if target.deployment is not None else ""
            for attempt in range(policy.max_attempts):
                reason = target.reason if attempt == 0 else "retry"
                refusal = await self._admit(target)
                if refusal is not None:
                    why, error = refusal
                    attempts.append(AttemptRecord(name, target.model, error.status, why, 0.0, reason, deployment))
                    last_skip = (error, target)
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._release(target)
                    raise failed()
                started = self._clock()
                calls += 1
                try:
                    result = await self._call_with_timeout(call, target, min(policy.attempt_timeout_s, remaining))
                except UpstreamError as err:
                    self._finish(target, err.status, err.retry_after)
                    attempts.append(
                        AttemptRecord(
                            name, target.model, err.status, err.message, self._ms(started), reason, deployment
                        )
                    )
                    last_error = (err, target)
                    next_step = after_failure(err.status)
                    if next_step is Next.RAISE or (max_calls is not None and calls >= max_calls):
                        raise failed() from err
                    if next_step is Next.NEXT_TARGET or attempt + 1 == policy.max_attempts:
                        break
                    if target.deployment is not None:
                        break  # ejected by the failure: the next deployment is tried at once
                    delay = self._delay_before_retry(err, attempt)
                    if delay is None:
                        break
                    if self._clock() + delay >= deadline:
                        raise failed() from err
                    await self._sleep(delay)
                except BaseException:
                    # Cancelled, or refused before anything was sent (an OrqenError from the
                    # translation): no verdict on the provider either way.
                    self._release(target)
                    raise
                else:
                    status = status_of(result)
                    record = AttemptRecord(name, target.model, status, "", self._ms(started), reason, deployment)
                    attempts.append(record)
                    return Answer(result, target, record, started)
        raise failed()

    async def _admit(self, target: Target) -> tuple[str, UpstreamError] | None:
        """None when the target may be called now; otherwise why it is skipped (the attempt's
        error) and the error to raise should no other target answer.

        A deployment of a load-balanced model answers for itself; any other target for its circuit.
        """
        name = target.provider.name
        if target.deployment is not None:
            refusal = await target.deployment.admit()
            if refusal is None:
                return None
            where = f"{name} deployment {target.deployment.name}"
            return refusal.message, UpstreamError(refusal.status, f"{where}: {refusal.message}", refusal.retry_after)
        if self._breakers.allow(target.circuit):
            return None
        retry_in = self._breakers.retry_in(target.circuit)
        return CIRCUIT_OPEN, UpstreamError(503, f"{name}: {CIRCUIT_OPEN}", retry_after=retry_in)

    def _finish(self, target: Target, status: int, retry_after: float | None = None) -> None:
        """How an admitted call ended: for its deployment, or its circuit."""
        if target.deployment is not None:
            target.deployment.finish(status, retry_after)
        else:
            self._breakers.record(target.circuit, status)

    def _release(self, target: Target) -> None:
        """An admitted call ended without a verdict on the upstream."""
        if target.deployment is not None:
            target.deployment.release()
        else:
            self._breakers.release(target.circuit)

    async def _call_with_timeout(self, call: Callable[[Target], Awaitable[T]], target: Target, timeout_s: float) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await call(target)
        except TimeoutError:
            raise UpstreamError(504, f"{target.provider.name} did not answer within {timeout_s:g}s") from None

    def _delay_before_retry(self, err: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before calling the same target again; None: do not, move on."""
        policy = self._policy
        if err.retry_after is not None:
            return max(0.0, err.retry_after) if err.retry_after <= policy.max_retry_after_s else None
        # Full jitter: anywhere between 0 and the exponential step, so retries spread out.
        return self._rng() * min(policy.max_delay_s, policy.base_delay_s * 2.0**attempt)

    def _ms(self, started: float) -> float:
        return (self._clock() - started) * 1000


class DispatchedStream(AsyncIterator[Chunk]):
    """The canonical chunks of the first target whose stream starts (see `Dispatcher.stream`).

    Iterate it once. `target` is the target that answered, set before the first chunk is
    handed out. The `attempts` list given to `Dispatcher.stream` gets every attempt as it
    happens; the answering one is completed when the stream ends (its duration) or fails
    (its status and error). The `state` holds the answering stream's status and usage.
    Close it (`aclose`, or `contextlib.aclosing`) when you stop reading early, so the
    upstream response is closed at once.
    """

    def __init__(self, chunks: Callable[[Callable[[Target], None]], AsyncGenerator[Chunk, None]]) -> None:
        self.target: Target | None = None
        self._chunks = chunks(self._answered_by)

    def __aiter__(self) -> DispatchedStream:
        return self

    async def __anext__(self) -> Chunk:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    def _answered_by(self, target: Target) -> None:
        self.target = target


async def _close(chunks: AsyncIterator[Chunk]) -> None:
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()


# --- Settings ---------------------------------------------------------------------------------


class ResilienceSettings(OrqenSettings):
    """The retry policy and circuit breakers, as ORQEN_* settings (a mixin of DispatchSettings)."""

    retry_max_attempts: int = Field(
        3, ge=1, description="Calls to one model, the first included, before its fallback is tried."
    )
    retry_base_delay_seconds: float = Field(
        0.25, ge=0, description="First backoff step between retries; doubles each retry, with full jitter."
    )
    attempt_timeout_seconds: float = Field(
        600.0, gt=0, description="Time one call gets for its answer (a stream: for its first chunk)."
    )
    total_timeout_seconds: float = Field(
        900.0, gt=0, description="Time all calls, retries and fallbacks of one request get together."
    )
    breaker_threshold: int = Field(
        5, ge=1, description="Consecutive provider faults (5xx, timeouts, unreachable) that open its circuit."
    )
    breaker_cooldown_seconds: float = Field(
        30.0, ge=0, description="How long an open circuit refuses calls before one trial call."
    )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_delay_s=self.retry_base_delay_seconds,
            attempt_timeout_s=self.attempt_timeout_seconds,
            total_timeout_s=self.total_timeout_seconds,
        )

    def circuit_breakers(self, clock: Clock = time.monotonic) -> CircuitBreakers:
        return CircuitBreakers(self.breaker_threshold, self.breaker_cooldown_seconds, clock)
