"""The canonical chat request as the optimizer reads it: each tool kept as its JSON text.

A request with 500 tools is about 400 KB of JSON, nearly all of it tool definitions, and
agents send the same definitions with every request. Parsing them into Python objects, and
serialising them again to find their cached facts (orqen_optimizer.tools), costs milliseconds
of the plan's budget on every request. Here the body is skimmed once: every top-level field
stays the slice of JSON it was, the tools become one slice each (the key of their facts), and
only what the router reads (the messages and tool_choice) is parsed. The forwarded body is the
same slices spliced back together around the parts the plan changed. A tool list seen lately is
not skimmed again: its slices are kept by its text (`KEPT_BYTES` of lists at most), so each
tool's text is the same object as last time, and so are the tools' facts (`ToolTexts.facts`):
a 500-tool list seen lately costs one lookup, not one per tool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from orqen_common.lru import Lru
from orqen_optimizer.tools import ToolFacts, raw_tool_facts

_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_slices = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
KEPT_BYTES = 64 * 1024 * 1024  # the lists' texts and their slices: about 80 lists of 500 tools


class ToolTexts(list[bytes]):
    """A tool list: each tool's JSON text, and once asked for, their facts (kept with the list)."""

    __slots__ = ("_facts",)

    def __init__(self, texts: list[bytes]) -> None:
        super().__init__(texts)
        self._facts: list[ToolFacts] | None = None

    def facts(self) -> list[ToolFacts]:
        """Each tool's `raw_tool_facts`; raises orjson.JSONDecodeError for a tool that is not JSON after all."""
        if self._facts is None:  # two threads may both work them out: the same facts, kept once
            self._facts = [raw_tool_facts(t) for t in self]
        return self._facts


def _list_weight(text: bytes, _: ToolTexts) -> int:
    """A tool list's text and its slices: about twice the text."""
    return 2 * len(text)


_kept: Lru[bytes, ToolTexts] = Lru(KEPT_BYTES, weigh=_list_weight)
_lock = threading.Lock()


class MalformedChatError(ValueError):
    """The body is not a JSON object: the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ChatJson:
    fields: dict[str, msgspec.Raw]
    tools: ToolTexts | None  # each tool's JSON text, when `tools` is a list (shared: never mutated)
    messages: Any
    tool_choice: Any

    @classmethod
    def parse(cls, body: bytes) -> ChatJson:
        """The request in `body`; MalformedChatError when it is not JSON, or not an object."""
        try:
            fields = _fields.decode(body)
        except msgspec.ValidationError:
            raise MalformedChatError("chat_json must be a chat request object.") from None
        except msgspec.DecodeError:
            raise MalformedChatError("chat_json is not valid JSON.") from None
        tools: ToolTexts | None = None
        try:
            if "tools" in fields:
                tools = _tool_texts(bytes(fields["tools"]))
        except msgspec.ValidationError:  # not a list: nothing to route, left as it is
            tools = None
        try:
            messages, tool_choice = (
                orjson.loads(bytes(fields[k])) if k in fields else None for k in ("messages", "tool_choice")
            )
        except orjson.JSONDecodeError:  # JSON that orjson refuses (a lone surrogate, a 65-bit integer)
            raise MalformedChatError("chat_json is not valid JSON.") from None
        return cls(fields, tools, messages, tool_choice)

    def read(self) -> dict[str, Any]:
        """What the router reads of the request, as the parsed request would hold it."""
        return {"messages": self.messages, "tool_choice": self.tool_choice}

    def spliced(self, tools: list[bytes] | None, messages: Any) -> bytes:
        """The request with `tools` (JSON texts) and `messages` in place of its own where not None."""
        fields = dict(self.fields)
        if tools is not None:
            fields["tools"] = msgspec.Raw(b"[" + b",".join(tools) + b"]")
        if messages is not None:
            fields["messages"] = msgspec.Raw(orjson.dumps(messages))
        return _encoder.encode(fields)


def _tool_texts(text: bytes) -> ToolTexts:
    """Each tool's JSON text in the list `text`, kept by `text`; msgspec.ValidationError when it is not a list."""
    with _lock:
        found = _kept.get(text)
    if found is not None:
        return found
    tools = ToolTexts([bytes(t) for t in _slices.decode(text)])
    with _lock:
        _kept.put(text, tools)
    return tools
