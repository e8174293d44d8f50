"""Token usage of a proxied answer, read from the bytes on their way to the caller.

The bytes themselves pass through untouched; this only watches them. A JSON answer is
kept (up to `MAX_JSON_BYTES`) to read its `usage` at the end; an event stream is read
line by line, and the last event that reports usage wins (the Responses API's
`response.completed` carries it under `response`). Binary answers (speech, images as
bytes) report none.

The usage shapes of the families: Chat-style `prompt_tokens`/`completion_tokens`
(completions, embeddings), Responses-style `input_tokens`/`output_tokens` with
`input_tokens_details.cached_tokens` (responses, gpt-image, gpt-4o-transcribe), and a
bare `total_tokens` (Jina-style rerank), counted as input.
"""

from __future__ import annotations

from typing import Any

import orjson

from orqen_common.canonical import TokenUsage

MAX_JSON_BYTES = 32 * 1024 * 1024
# An event line longer than this is not one that carries usage worth keeping in memory.
_MAX_LINE_BYTES = 4 * 1024 * 1024


def usage_from(body: Any) -> TokenUsage | None:
    """The usage an answer object reports, in any of the families' shapes; None when it has none."""
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if not isinstance(usage, dict) and isinstance(body.get("response"), dict):
        usage = body["response"].get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    input_tokens = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
    output_tokens = _int(usage.get("output_tokens", usage.get("completion_tokens")))
    if not input_tokens and not output_tokens:
        input_tokens = _int(usage.get("total_tokens"))
    cached = min(_int(details.get("cached_tokens")) if isinstance(details, dict) else 0, input_tokens)
    return TokenUsage(input=input_tokens - cached, output=output_tokens, cache_read=cached)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class UsageWatcher:
    """Fed every chunk of an answer, it knows the usage (and a JSON answer's model) once the answer ended."""

    def __init__(self, content_type: str) -> None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        self._json = media_type == "application/json" or media_type.endswith("+json")
        self._events = media_type == "text/event-stream"
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._line = b""
        self.usage = TokenUsage()
        self.model = ""  # the model a JSON answer names (the upstream's choice when the caller named none)

    def feed(self, chunk: bytes) -> None:
        if self._json:
            self._kept_bytes += len(chunk)
            if self._kept_bytes > MAX_JSON_BYTES:
                self._json, self._kept = False, []  # too large to keep: its usage goes unread
            else:
                self._kept.append(chunk)
        elif self._events:
            lines = (self._line + chunk).split(b"\n")
            self._line = lines.pop()
            if len(self._line) > _MAX_LINE_BYTES:
                self._line = b""
            for line in lines:
                self._event_line(line)

    def finish(self) -> TokenUsage:
        """The usage, once the whole answer was fed."""
        if self._json and self._kept:
            answer = _parsed(b"".join(self._kept))
            self._found(usage_from(answer))
            if isinstance(answer, dict) and isinstance(answer.get("model"), str):
                self.model = answer["model"]
            self._kept = []
        elif self._events and self._line:
            self._event_line(self._line)
            self._line = b""
        return self.usage

    def _event_line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.startswith(b"data:") or b'"usage"' not in line:
            return
        self._found(usage_from(_parsed(line[5:])))

    def _found(self, usage: TokenUsage | None) -> None:
        if usage is not None:
            self.usage = usage


def _parsed(raw: bytes) -> Any:
    """The JSON value of `raw`; None when it is not JSON (the answer still went out as it was)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
