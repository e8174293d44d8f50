"""The few facts every translator to and from the canonical chat shape shares.

The shape itself, typed, is OpenAI's Chat Completions: `orqen_common.formats.openai`.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from msgspec import UNSET, UnsetType

from orqen_common.errors import OrqenError, invalid_request
from orqen_common.formats.openai import CompletionUsage, Content, PromptTokensDetails, TextPart

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


def stop_sequences(stop: str | list[str] | None) -> list[str]:
    """The canonical `stop` as a list for providers that take one; blank sequences say nothing and are left out."""
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop or () if s]


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
    def from_canonical(cls, usage: CompletionUsage | UnsetType | None) -> TokenUsage:
        if not isinstance(usage, CompletionUsage):
            return cls()
        details = usage.prompt_tokens_details
        cached = written = 0
        if isinstance(details, PromptTokensDetails):
            cached = details.cached_tokens
            written = details.cache_creation_tokens or 0
        return cls(
            input=max(usage.prompt_tokens - cached - written, 0),
            output=usage.completion_tokens,
            cache_read=cached,
            cache_write=written,
        )

    @property
    def prompt(self) -> int:
        """Every input token, cache reads and writes included: canonical `prompt_tokens`."""
        return self.input + self.cache_read + self.cache_write

    def canonical(self) -> CompletionUsage:
        prompt = self.prompt
        return CompletionUsage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            prompt_tokens_details=PromptTokensDetails(
                cached_tokens=self.cache_read, cache_creation_tokens=self.cache_write or UNSET
            ),
        )


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


def text_of(content: Content | None) -> str:
    """The text of canonical message content: a string, or the text parts of a part list."""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content or () if isinstance(p, TextPart))
