"""Shorter long agent conversations, with the parts that matter kept word for word.

What is never changed: system and developer messages, the latest user message, and every
message from the last `KEEP_LATEST_USER_TURNS` user turns on (the work in progress). What
shrinks, in older turns only:

- a tool output that is the same as a later one is replaced by a one-line pointer;
- a long tool output keeps its first and last lines, and every line that holds a critical
  term — anything the latest user message mentions (words, numbers, identifiers, paths,
  URLs) — and then the identifiers, numbers, paths and URLs of the lines it leaves out,
  listed once each, so a later question can still be answered from them.

Message roles, order, tool_call_ids and assistant tool calls are untouched, so the result is
always a valid conversation for the provider. Token counts are real BPE counts (tokens.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from orqen_common.canonical import text_of
from orqen_optimizer.tokens import count_tokens

KEEP_LATEST_USER_TURNS = 2
MIN_TOKENS = 2000  # below this a conversation is left alone: the savings would not pay
LONG_OUTPUT_TOKENS = 300  # older tool outputs longer than this are shrunk
HEAD_LINES, TAIL_LINES = 5, 3
MAX_KEPT_TERMS = 40

# Identifiers, numbers, paths and URLs: the terms a later question is likely to need verbatim.
_URL = r"https?://[^\s\"'<>)\]]+"
_PATH = r"(?:~|\.{1,2})?/[\w.@%+-]+(?:/[\w.@%+-]+)+"
_ID = r"\b[A-Za-z_][\w-]*(?:[_\-.:]\w+|\d\w*)+\b|\b[a-z]+[A-Z]\w*\b"  # snake_case, kebab, ids with digits, camelCase
_NUMBER = r"(?<![\w.])\d[\d,._:-]*\d(?![\w.])|(?<![\w.])\d(?![\w.])"
_CRITICAL = re.compile(f"{_URL}|{_PATH}|{_ID}|{_NUMBER}")
# Listed in this order when a shrunk output names the terms of the lines it left out.
_TERM_KINDS = tuple(re.compile(p) for p in (_URL, _PATH, _ID, _NUMBER))
_WORD = re.compile(r"[\w./:@-]{4,}")
# Words of a question that say nothing about which lines of an output matter.
_STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "also",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "just",
        "more",
        "most",
        "must",
        "need",
        "only",
        "other",
        "over",
        "please",
        "same",
        "should",
        "show",
        "some",
        "such",
        "tell",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "want",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "yours",
    ]
)


@dataclass(frozen=True, slots=True)
class ContextResult:
    messages: list[Any]
    tokens_in: int
    tokens_out: int

    @property
    def changed(self) -> bool:
        return self.tokens_out < self.tokens_in


def tokens_of(messages: Iterable[Any]) -> int:
    return sum(count_tokens(_text(m.get("content")) if isinstance(m, dict) else "") for m in messages)


def compress_context(messages: Any) -> ContextResult:
    """The conversation with older tool outputs shrunk (see the module docstring)."""
    if not isinstance(messages, list):
        return ContextResult(messages, 0, 0)
    tokens_in = tokens_of(messages)
    if tokens_in < MIN_TOKENS:
        return ContextResult(messages, tokens_in, tokens_in)
    protected_from = _start_of_latest_turns(messages)
    terms = _terms_of_latest_user_message(messages)
    later_outputs: set[str] = set()
    out: list[Any] = list(messages)
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not _is_tool_output(message):
            continue
        content = message.get("content")
        text = _text(content)
        if index < protected_from:
            if text in later_outputs and len(text) > 80:
                out[index] = {**message, "content": "[Orqen: same output as a later call of this conversation]"}
            elif isinstance(content, str) and count_tokens(text) > LONG_OUTPUT_TOKENS:
                out[index] = {**message, "content": _shrink(text, terms)}
        later_outputs.add(text)
    tokens_out = tokens_of(out)
    if tokens_out >= tokens_in:
        return ContextResult(messages, tokens_in, tokens_in)
    return ContextResult(out, tokens_in, tokens_out)


def _is_tool_output(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") in ("tool", "function")


def _start_of_latest_turns(messages: list[Any]) -> int:
    """Index of the first message of the last KEEP_LATEST_USER_TURNS user turns."""
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    return users[-KEEP_LATEST_USER_TURNS] if len(users) >= KEEP_LATEST_USER_TURNS else 0


def _terms_of_latest_user_message(messages: list[Any]) -> set[str]:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text(message.get("content"))
            words = {w.lower().strip(".,:;") for w in _WORD.findall(text)}
            return {w for w in words if w not in _STOPWORDS} | set(_CRITICAL.findall(text))
    return set()


def _shrink(text: str, terms: set[str]) -> str:
    lines = text.splitlines()
    if len(lines) <= HEAD_LINES + TAIL_LINES:
        lines = _wrap(text)
        if len(lines) <= HEAD_LINES + TAIL_LINES:
            return text
    head, middle, tail = lines[:HEAD_LINES], lines[HEAD_LINES:-TAIL_LINES], lines[-TAIL_LINES:]
    keep = [False] * len(middle)
    lowered = [line.lower() for line in middle]
    # A term on a few lines picks those lines; a term on many lines ("shard" in a log of shards)
    # picks nothing out, so only its first line is kept: the term itself is never lost.
    selective = max(3, len(middle) // 20)
    for term in terms:
        hits = [i for i, line in enumerate(middle) if term in line or term in lowered[i]]
        for i in hits if len(hits) <= selective else hits[:1]:
            keep[i] = True
    kept = [line for line, k in zip(middle, keep, strict=True) if k]
    dropped = [line for line, k in zip(middle, keep, strict=True) if not k]
    listed: list[str] = []
    distinct: set[str] = set()
    locations: list[str] = []  # listed URLs and paths: a term inside one is not listed again
    for position, kind in enumerate(_TERM_KINDS):  # URLs and paths first, bare numbers last
        for term in kind.findall("\n".join(dropped)):
            if term in distinct or any(term in known for known in locations):
                continue
            distinct.add(term)
            if len(listed) < MAX_KEPT_TERMS:
                listed.append(term)
                if position < 2:
                    locations.append(term)
    note = f"[Orqen: {len(dropped)} of {len(lines)} lines left out"
    if listed:
        more = f" and {len(distinct) - len(listed)} more" if len(distinct) > len(listed) else ""
        note += f"; terms in them: {', '.join(listed)}{more}"
    return "\n".join([*head, *kept, note + "]", *tail])


def _wrap(text: str, width: int = 200) -> list[str]:
    """One long line (minified JSON, say) as pieces of about `width` characters, cut between words."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + width)
        if end < len(text):
            space = text.rfind(" ", start, end)
            comma = text.rfind(",", start, end)
            end = max(space, comma) + 1 if max(space, comma) > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


def _text(content: Any) -> str:
    """The text of message content; content of another shape counts as its JSON."""
    if content is None or isinstance(content, (str, list)):
        return text_of(content)
    return orjson.dumps(content).decode()
