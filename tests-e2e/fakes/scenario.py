"""The one scenario every fake provider follows: what it saw, and how it answers.

A fake validates the request in its provider's wire format, reads it into a
`Conversation`, asks `decide()` for the `Answer`, and renders that answer in its own
wire format. So the same conversation gets the same answer from every provider, and a
test can check a translation by asking a fake to `describe` what it received.

The rules (model name first, then the last user turn):
- model contains `fake-429` / `fake-500`: that HTTP error, in the provider's error shape
  (429 with `retry-after: 7`).
- `call NAME {json}` one or more times: "Let me check." and one tool call per match.
- a last turn that holds only tool results: "results: " + " | ".join(their contents).
- `describe`: the `Observed` record as JSON.
- `stop at WORD`: "one two WORD three", cut to "one two " when WORD is a stop sequence.
- anything else: "echo: " + the text.
A max_tokens smaller than the answer's word count cuts it to that many words.
Every answer reports `USAGE`; for models containing `fake-cache-write`, `CACHE_WRITE_USAGE`
(the same 42 prompt tokens, 20 of them written to the prompt cache).
Streams fail on purpose for models containing `fake-broken-stream` (the connection
drops halfway through the text) and `fake-stream-error` (the provider's in-stream
error after two text deltas).

Failure injection, for testing retries, timeouts and fallbacks, comes before those rules
(once a fake has checked and recorded the request); a model name may combine these:
- `fake-slow-<ms>`: the answer comes after <ms> milliseconds (sooner if the client hangs up).
- `fake-flaky-<status>-<n>`: the first <n> requests with exactly this model name get the HTTP
  error <status> (4xx or 5xx) in the provider's error shape, a 429 with a retry-after of 0;
  later ones are answered normally. Each fake counts its own (its `FaultInjector`).
- `fake-drop`: the connection closes before any byte of the body (after the status line:
  an ASGI server answers 500 itself to an app that fails before starting its response).

A test can also put a fake, or one of its models, under a storm (`FaultInjector.storm`):
every request it gets takes the next of a list of `Fault`s in turn (429s with or without a
Retry-After, 5xx, slow answers, a connection reset before the answer or in the middle of a
stream) until `FaultInjector.calm`. A storm wins over the rules above.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict

import orjson

from orqen_common.canonical import TokenUsage

# 42 prompt tokens of which 10 were cache reads, and 7 output tokens, for every answer.
USAGE = TokenUsage(input=32, output=7, cache_read=10, cache_write=0)
CACHE_WRITE_USAGE = TokenUsage(input=12, output=7, cache_read=10, cache_write=20)
RETRY_AFTER_SECONDS = 7
TOOL_CALL_PREAMBLE = "Let me check."

# Anthropic's names, which Bedrock shares; `orqen_common.canonical.finish_reason` maps them to OpenAI's.
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]
StreamFault = Literal["broken", "error"]

_CALL = re.compile(r"call (\w+) (\{.*?\})(?=\s+call |\s*$)")
_STOP_AT = re.compile(r"stop at (\S+)")


class Observed(TypedDict):
    """What a fake saw, with the same keys for every provider (the answer to `describe`)."""

    system: str
    roles: list[str]
    user_texts: list[str]
    assistant_texts: list[str]
    history_tool_calls: list[dict[str, Any]]  # {"id", "name", "input"}
    tool_results: list[dict[str, Any]]  # {"id", "content", "is_error"}
    images: list[dict[str, Any]]  # {"media_type", "size"} | {"url"}
    tools: list[str]
    tool_choice: str | None  # "auto" | "required" | "none" | "tool:<name>"
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: list[str]
    stream: bool


@dataclass
class Turn:
    """One wire message, reduced to what the scenario looks at."""

    role: str  # the wire role: "user" | "assistant" | "tool" (OpenAI's tool results)
    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "input"}
    tool_results: list[dict[str, Any]] = field(default_factory=list)  # {"id", "content", "is_error"}
    images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.texts)


@dataclass
class Conversation:
    """A request in provider-neutral form; each fake builds one from its validated body."""

    model: str
    turns: list[Turn]
    system: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    tool_choice: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False

    def observed(self) -> Observed:
        return Observed(
            system="\n".join(self.system),
            roles=[t.role for t in self.turns],
            user_texts=[t.text for t in self.turns if t.role == "user" and t.texts],
            assistant_texts=[t.text for t in self.turns if t.role == "assistant" and t.texts],
            history_tool_calls=[c for t in self.turns for c in t.tool_calls],
            tool_results=[r for t in self.turns for r in t.tool_results],
            images=[i for t in self.turns for i in t.images],
            tools=list(self.tools),
            tool_choice=self.tool_choice,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=list(self.stop),
            stream=self.stream,
        )

    def last_user_turn(self) -> Turn:
        """The caller's side of the last exchange: every non-assistant message after the last answer.

        For Anthropic and Bedrock that is the last user message; for OpenAI it also takes in
        the `tool` messages, which are how OpenAI spells tool results.
        """
        turns = list(self.turns)
        while turns and turns[-1].role == "assistant":  # an assistant prefill is not the question
            turns.pop()
        merged = Turn("user")
        for turn in reversed(turns):
            if turn.role == "assistant":
                break
            merged.texts[:0] = turn.texts
            merged.tool_results[:0] = turn.tool_results
        return merged


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What the model "generates"; each fake renders it in its own wire format."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None  # the stop sequence that ended generation, if one did
    error_status: int | None = None  # 429 or 500: answer with that HTTP error instead
    stream_fault: StreamFault | None = None  # how a stream of this answer fails, if it does
    usage: TokenUsage = USAGE


def decide(conversation: Conversation) -> Answer:
    """The scenario's answer to a conversation (see the module docstring for the rules)."""
    model = conversation.model
    if "fake-429" in model:
        return Answer(error_status=429)
    if "fake-500" in model:
        return Answer(error_status=500)
    fault: StreamFault | None = None
    if "fake-broken-stream" in model:
        fault = "broken"
    elif "fake-stream-error" in model:
        fault = "error"
    usage = CACHE_WRITE_USAGE if "fake-cache-write" in model else USAGE
    answer = replace(_answer_to(conversation), stream_fault=fault, usage=usage)
    return _cut_to_max_tokens(answer, conversation.max_tokens)


def _answer_to(conversation: Conversation) -> Answer:
    last = conversation.last_user_turn()
    text = last.text
    if last.tool_results and not last.texts:
        return Answer("results: " + " | ".join(str(r["content"]) for r in last.tool_results))
    calls = _tool_calls_asked_for(text)
    if calls:
        return Answer(TOOL_CALL_PREAMBLE, calls, "tool_use")
    if "describe" in text:
        return Answer(orjson.dumps(conversation.observed()).decode())
    if match := _STOP_AT.search(text):
        word = match[1]
        if word in conversation.stop:
            return Answer("one two ", stop_reason="stop_sequence", stop_sequence=word)
        return Answer(f"one two {word} three")
    return Answer("echo: " + text)


def _tool_calls_asked_for(text: str) -> tuple[ToolCall, ...]:
    calls = []
    for name, arguments in _CALL.findall(text):
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return ()  # not a well-formed request for a call: treat the text as plain text
        if not isinstance(parsed, dict):
            return ()
        calls.append(ToolCall(name, parsed))
    return tuple(calls)


def _cut_to_max_tokens(answer: Answer, max_tokens: int | None) -> Answer:
    words = answer.text.split()
    if max_tokens is None or max_tokens >= len(words):
        return answer
    # Generation stopped inside the text, so it never reached any tool call.
    return replace(
        answer, text=" ".join(words[:max_tokens]), tool_calls=(), stop_reason="max_tokens", stop_sequence=None
    )


# --- Streaming ------------------------------------------------------------------------------


class StreamDroppedError(RuntimeError):
    """Raised inside a fake's body generator: the server drops the connection mid-stream."""


class InStreamError(Exception):
    """The point where a fake sends its provider's in-stream error event and ends the stream."""


def text_fragments(text: str) -> list[str]:
    """The text deltas of a stream: word by word, spaces kept, so they join back to `text`."""
    if not text:
        return []
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def json_fragments(value: dict[str, Any]) -> list[str]:
    """A tool call's JSON arguments in at least three pieces, as providers stream them."""
    encoded = orjson.dumps(value).decode()
    pieces = max(3, len(encoded) // 8)
    bounds = [len(encoded) * i // pieces for i in range(pieces + 1)]
    return [encoded[a:b] for a, b in itertools.pairwise(bounds)]


def streamed_text(answer: Answer) -> Iterator[str]:
    """The answer's text deltas, failing where the scenario says a stream fails.

    Raises `StreamDroppedError` (let it escape the body generator) or `InStreamError` (catch it
    and send the provider's error event).
    """
    fragments = text_fragments(answer.text)
    for index, fragment in enumerate(fragments):
        if answer.stream_fault == "broken" and index == len(fragments) // 2:
            raise StreamDroppedError("the fake upstream dropped the connection mid-stream")
        if answer.stream_fault == "error" and index == 2:
            raise InStreamError
        yield fragment
    if answer.stream_fault == "error":  # an answer shorter than two deltas still fails
        raise InStreamError


async def dropped_connection() -> AsyncIterator[bytes]:
    """A response body that fails before its first byte: the server drops the connection."""
    raise StreamDroppedError("the fake upstream dropped the connection")
    yield b""  # pragma: no cover - makes this an async generator


# --- Failure injection ------------------------------------------------------------------------

_FLAKY = re.compile(r"fake-flaky-([45]\d\d)-(\d+)")
_SLOW = re.compile(r"fake-slow-(\d+)")
_DROP = "fake-drop"


@dataclass(frozen=True)
class Fault:
    """How a fake misbehaves on one request: first the delay, then the error, the drop or the broken stream."""

    delay_seconds: float = 0.0
    error_status: int | None = None  # answer with this HTTP error
    # A 429's Retry-After in seconds; None sends no Retry-After at all.
    retry_after: int | None = 0
    drop: bool = False  # close the connection before any byte of the body
    # A stream's own failure (a non-streaming answer ignores it): "broken" resets the
    # connection halfway through the text, "error" sends the provider's in-stream error.
    stream_fault: StreamFault | None = None

    def on(self, answer: Answer) -> Answer:
        """The scenario's answer, its stream failing as this fault says when it says so."""
        return replace(answer, stream_fault=self.stream_fault) if self.stream_fault else answer


class FaultInjector:
    """The failure-injection rules of the module docstring; `fake-flaky` counts per instance.

    Storms are set from the test's thread while the fake serves in its own: a lock keeps
    each request's turn in a storm its own.
    """

    def __init__(self) -> None:
        self._flaky_requests: Counter[str] = Counter()
        self._storms: dict[str | None, Iterator[Fault]] = {}  # by model; None: every model
        self._lock = threading.Lock()

    def storm(self, faults: Sequence[Fault], model: str | None = None) -> None:
        """From now on each request (for exactly `model`, or for any model) gets the next of `faults`, round and round.

        A storm on every model is a provider's outage; one on a model is that model's.
        """
        if not faults:
            raise ValueError("a storm needs at least one fault")
        with self._lock:
            self._storms[model] = itertools.cycle(faults)

    def calm(self) -> None:
        """End every storm."""
        with self._lock:
            self._storms.clear()

    def fault_for(self, model: str) -> Fault:
        """The fault of one request; call it once per request, since storms and flaky models count them."""
        with self._lock:
            storm = self._storms.get(model) or self._storms.get(None)
            if storm is not None:
                return next(storm)
            slow = _SLOW.search(model)
            flaky = _FLAKY.search(model)
            error_status = None
            if flaky:
                self._flaky_requests[model] += 1
                if self._flaky_requests[model] <= int(flaky[2]):
                    error_status = int(flaky[1])
        return Fault(int(slow[1]) / 1000 if slow else 0.0, error_status, drop=_DROP in model)


async def sleep_unless_hung_up(seconds: float, receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
    """Wait like a slow model, but stop when the client hangs up, as a real server stops working.

    `receive` is the request's ASGI receive, its body already read: the next message it
    gives is the disconnect. So a client's timeout never leaves the server busy (and a
    test server's shutdown waiting) for a request nobody waits for.
    """

    async def hung_up() -> None:
        if (await receive())["type"] != "http.disconnect":
            await asyncio.Event().wait()  # not a server that reports it: wait the whole time

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hung_up(), seconds)
