"""What every provider adapter offers, and the error it raises for an upstream failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson


@dataclass(slots=True)
class UpstreamUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(slots=True)
class Completion:
    """A canonical chat completion and what the provider reported about it."""

    body: dict[str, Any]
    usage: UpstreamUsage
    status: int


@dataclass(slots=True)
class StreamState:
    """Filled in while a stream runs: usage arrives with the last chunks."""

    usage: UpstreamUsage = field(default_factory=UpstreamUsage)
    status: int = 0


class UpstreamError(Exception):
    """The provider answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    async def complete(self, chat: dict[str, Any], model: str) -> Completion: ...

    def stream(self, chat: dict[str, Any], model: str, state: StreamState) -> AsyncIterator[dict[str, Any]]: ...


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header given as a number (HTTP dates are rare upstream)."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_message(response: httpx.Response) -> str:
    """The provider's own error message, whatever its error shape."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("Message") or err)
        if isinstance(err, str):
            return err
        if "message" in body:
            return str(body["message"])
    return str(body)[:500]
