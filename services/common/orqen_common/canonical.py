"""The canonical chat shape, and the few facts every translator to and from it shares.

Inside Orqen a chat request is an OpenAI Chat Completions request, its answer a
`chat.completion`, and a stream a sequence of `chat.completion.chunk` objects. The edge
translates each SDK's format into that shape and back; dispatch translates it to each
provider and back. N ingress + M provider translators, never one per pair.

Beyond OpenAI's own fields the canonical request may carry these extensions. A provider
translator that can honour one does; one that cannot either ignores it (when it is only
a hint) or rejects the request with `unsupported(...)` (when dropping it would change the
answer):

- `top_k` (int): sampling; Anthropic and Bedrock honour it, OpenAI rejects it.
- `thinking` (object, Anthropic's shape): extended thinking; OpenAI rejects it.
- `anthropic_beta` (list of str): the caller's `anthropic-beta` header; sent on to
  Anthropic, a hint elsewhere.
- `cache_control` on a content part, a tool or a system part (Anthropic's shape):
  prompt-caching breakpoints; a hint where the provider caches on its own.
- `is_error: true` on a tool message: the tool failed (Anthropic's `is_error`, Bedrock's
  `status: error`); OpenAI has no such flag, and the result's text still says so.

A canonical answer's choice (or a stream's finish chunk) may carry `stop_sequence`: present
when the provider says a stop sequence ended generation, holding that sequence, or "" when
the provider does not say which; the OpenAI ingress drops it.

A canonical stream always ends with a usage chunk (`choices: []`, `usage` set), whether
or not the caller asked for `stream_options.include_usage`: every ingress needs the final
usage, and only the OpenAI ingress decides whether its caller sees that chunk.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Any

from orqen_common.errors import OrqenError, invalid_request

# Anthropic's stop_reason and Bedrock's stopReason share these names.
_FINISH_BY_STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_STOP_REASON_BY_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filtered",
}


def finish_reason(stop_reason: str | None) -> str:
    """Canonical finish_reason for an Anthropic/Bedrock stop reason."""
    return _FINISH_BY_STOP_REASON.get(stop_reason or "end_turn", "stop")


def stop_reason(finish: str | None, stop_sequence: str | None = None) -> str:
    """Anthropic/Bedrock stop reason for a canonical finish_reason.

    Anthropic spells a content filter `refusal`; callers that speak Anthropic map
    `content_filtered` to it themselves.
    """
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASON_BY_FINISH.get(finish or "stop", "end_turn")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Usage in the split Anthropic and Bedrock report: `input` excludes cache reads and writes.

    Canonical (OpenAI) `prompt_tokens` is the total, with `cached_tokens` a part of it.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @classmethod
    def from_canonical(cls, usage: dict[str, Any] | None) -> TokenUsage:
        usage = usage or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0)
        written = int(details.get("cache_creation_tokens") or 0)
        prompt = int(usage.get("prompt_tokens") or 0)
        return cls(
            input=max(prompt - cached - written, 0),
            output=int(usage.get("completion_tokens") or 0),
            cache_read=cached,
            cache_write=written,
        )

    def canonical(self) -> dict[str, Any]:
        prompt = self.input + self.cache_read + self.cache_write
        details: dict[str, int] = {"cached_tokens": self.cache_read}
        if self.cache_write:
            details["cache_creation_tokens"] = self.cache_write
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": details,
        }


_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a `data:…;base64,…` URL; None for any other URL."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    data = match["data"]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request("An image data URL does not hold valid base64.") from None
    return match["media"], data


def data_url(media_type: str, b64: str) -> str:
    return f"data:{media_type};base64,{b64}"


def new_tool_call_id() -> str:
    """An id for a tool call whose provider gave none (OpenAI's style)."""
    return "call_" + secrets.token_urlsafe(18).replace("-", "").replace("_", "")[:24]


def unsupported(feature: str, where: str) -> OrqenError:
    """400 for a feature one side cannot express, naming the feature and the side."""
    return invalid_request(f"{feature} is not supported by {where}.")


def text_of(content: Any) -> str:
    """The text of canonical message content: a string, or the text parts of a part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
