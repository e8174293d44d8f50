"""What every provider adapter offers, and the error it raises for an upstream failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import aiohttp
import msgspec
import orjson

from orqen_common.canonical import TokenUsage, unsupported
from orqen_common.formats.openai import ChatCompletion, ChatCompletionChunk, ChatRequest
from orqen_dispatch.upstream_http import UPSTREAM_ERRORS, UpstreamClient, UpstreamRequest, UpstreamResponse

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(slots=True)
class Completion:
    """A canonical chat completion and what the provider reported about it."""

    body: ChatCompletion
    usage: TokenUsage
    status: int


@dataclass(slots=True)
class StreamState:
    """Filled in while a stream runs: usage arrives with the last chunks."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    status: int = 0


class UpstreamError(Exception):
    """The provider answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


# Per-request credentials (CompleteRequest.credentials): the aws_* extensions for now.
Credentials = Mapping[str, str]


class Provider(Protocol):
    """A provider translator: canonical request in, canonical answer out.

    `stream` yields canonical chunks as the provider sends them (never buffered), and
    ends with the canonical usage chunk (choices empty). It fills `state` as it goes.
    """

    name: str

    async def complete(self, chat: ChatRequest, model: str, credentials: Credentials) -> Completion: ...

    def stream(
        self, chat: ChatRequest, model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]: ...


async def send(client: UpstreamClient, request: UpstreamRequest, provider: str) -> UpstreamResponse:
    """Send and return the (streaming) response; any failure becomes an UpstreamError.

    The body of a successful response is not read yet, so callers can stream it; they
    must close it.
    """
    try:
        response = await client.open(request)
    except TimeoutError as err:
        raise UpstreamError(504, f"{provider} did not answer in time") from err
    except aiohttp.ClientError as err:
        raise UpstreamError(502, f"{provider} is unreachable: {err.__class__.__name__}") from err
    if response.status >= 400:
        body = b""
        try:
            body = await response.read()
        except UPSTREAM_ERRORS:
            pass
        finally:
            response.close()
        raise UpstreamError(response.status, error_message(body, response.reason), retry_after(response))
    return response


async def read_body(response: UpstreamResponse, provider: str) -> bytes:
    """The whole body of a response opened by `send`, then closed."""
    try:
        return await response.read()
    except UPSTREAM_ERRORS as err:
        raise UpstreamError(502, f"{provider} broke the connection: {err.__class__.__name__}") from err
    finally:
        response.close()


class AnswerDecoder(Protocol[T_co]):
    """What reads a provider's answer from JSON: a msgspec Decoder, or a wire format's own lenient reader."""

    def decode(self, buf: bytes | str, /) -> T_co: ...


def decode_answer(decoder: AnswerDecoder[T], raw: bytes | str, provider: str, what: str = "answer") -> T:
    """A provider's answer (or stream event) in its wire type; a 502 naming what does not fit."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as err:
        raise UpstreamError(502, f"{provider} returned an {what} that does not fit its API: {err}") from None
    except msgspec.DecodeError:
        raise UpstreamError(502, f"{provider} returned an {what} that is not JSON") from None


@dataclass(slots=True)
class SseEvent:
    event: str
    data: str


async def sse_events(response: UpstreamResponse, provider: str) -> AsyncIterator[SseEvent]:
    """The events of a text/event-stream body (`event:` and joined `data:` lines)."""
    event: str = ""
    data: list[str] = []
    try:
        async for line in response.lines():
            if not line:
                if data:
                    yield SseEvent(event or "message", "\n".join(data))
                event, data = "", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            yield SseEvent(event or "message", "\n".join(data))
    except UPSTREAM_ERRORS as err:
        raise UpstreamError(502, f"{provider} stream broke: {err.__class__.__name__}") from err


def refuse_openai_only_features(chat: ChatRequest, where: str) -> None:
    """400 for the canonical (OpenAI) features other providers cannot express.

    Dropping any of these would change the answer the caller gets, so they are refused
    by name instead.
    """
    if (chat.n or 1) != 1:
        raise unsupported("n > 1 (several choices)", where)
    if chat.logprobs or chat.top_logprobs:
        raise unsupported("logprobs", where)
    if chat.response_format is not None:
        kind = chat.response_format.get("type")
        if kind != "text":
            raise unsupported(f"response_format {kind!r}", where)
    if chat.audio is not None or "audio" in (chat.modalities or ()):
        raise unsupported("Audio output", where)
    if chat.logit_bias:
        raise unsupported("logit_bias", where)
    for penalty, value in (("frequency_penalty", chat.frequency_penalty), ("presence_penalty", chat.presence_penalty)):
        if value:
            raise unsupported(f"A non-zero {penalty}", where)
    if chat.functions or chat.function_call:
        raise unsupported("Legacy functions (use tools)", where)
    if chat.web_search_options is not None:
        raise unsupported("web_search_options", where)


def retry_after(response: UpstreamResponse) -> float | None:
    """Seconds from a Retry-After header given as a number (HTTP dates are rare upstream)."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_message(content: bytes, reason: str) -> str:
    """The provider's own error message in an error answer's body, whatever its error shape."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")[:500] or reason
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("Message") or err)
        if isinstance(err, str):
            return err
        if "message" in body:
            return str(body["message"])
    return str(body)[:500]
