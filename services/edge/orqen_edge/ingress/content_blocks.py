"""Canonical stream deltas as strictly sequential content blocks, in no SDK's format.

Anthropic's and Bedrock's streams both answer in content blocks (text, or one tool
call) that open, stream and close one after another, while a canonical stream sends
text and tool-call argument fragments as they come, possibly interleaving parallel
calls. `BlockSequencer` does that reshaping once and emits neutral `BlockEvent`s; each
ingress only renders them into its own wire events.

`tool_input` is the one reading of a canonical tool call's arguments as an input object,
streamed or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from orqen_common.canonical import new_tool_call_id
from orqen_common.errors import INTERNAL, OrqenError
from orqen_common.formats.openai import ChunkChoice, FunctionCallDelta, ToolCallDelta

BlockKind = Literal["text", "tool"]


@dataclass(frozen=True, slots=True)
class BlockStart:
    """A block opens; `tool_id` and `name` are set for a tool call, empty for text."""

    index: int
    kind: BlockKind
    tool_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class BlockDelta:
    """More of the open block: text, or a fragment of the tool call's JSON arguments."""

    index: int
    kind: BlockKind
    data: str


@dataclass(frozen=True, slots=True)
class BlockStop:
    """The open block is complete; a tool block's joined deltas are then a JSON object."""

    index: int
    kind: BlockKind


BlockEvent = BlockStart | BlockDelta | BlockStop


@dataclass(slots=True, eq=False)
class _Block:
    kind: BlockKind
    data: str = ""  # the text, or the arguments received so far
    tool_id: str = ""
    name: str = ""


class BlockSequencer:
    """Canonical choices in, strictly sequential block events out, numbered from 0.

    The open block streams live. A new block may close it only when nothing more can
    arrive for it: text always (later text just opens another block), a tool call once
    its arguments parse as JSON. When something new starts while the open call's
    arguments are still incomplete (a provider interleaving parallel calls), the open
    call keeps streaming and everything after it is held back and sent whole at the
    finish, so every call's arguments arrive complete and in order.

    A tool block's deltas always join into a JSON object: a call without arguments gets
    "{}", and arguments that are not an object are a 502, as is a fragment for a call
    already closed.
    """

    def __init__(self) -> None:
        self._events: list[BlockEvent] = []
        self._next_index = 0
        self._open: _Block | None = None
        self._calls: dict[int, _Block] = {}  # by canonical tool_calls index
        self._held: list[_Block] = []
        self._holding = False
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether the finish has been seen: every block is closed and nothing more is read."""
        return self._finished

    def feed(self, choice: ChunkChoice) -> list[BlockEvent]:
        """The events for one canonical stream choice (its delta, and its finish_reason if set)."""
        if self._finished:  # nothing but the usage chunk follows a finish in a canonical stream
            return []
        delta = choice.delta
        if isinstance(delta.content, str) and delta.content:
            self._add_text(delta.content)
        for tool_delta in delta.tool_calls or ():
            self._add_tool_delta(tool_delta)
        if choice.finish_reason:
            return self.finish()
        return self._take()

    def finish(self) -> list[BlockEvent]:
        """Close the open block and send what was held back, each block whole."""
        if self._finished:
            return []
        self._close_open()
        for block in self._held:
            data, block.data = block.data, ""
            self._start(block)
            self._append(data)
            self._close_open()
        self._held.clear()
        self._finished = True
        return self._take()

    def _add_text(self, text: str) -> None:
        if self._open is not None and self._open.kind == "text":
            self._append(text)
        elif self._must_hold():
            if self._held and self._held[-1].kind == "text":
                self._held[-1].data += text
            else:
                self._held.append(_Block("text", text))
        else:
            self._close_open()
            self._start(_Block("text"))
            self._append(text)

    def _add_tool_delta(self, delta: ToolCallDelta) -> None:
        function = delta.function or FunctionCallDelta()
        fragment = function.arguments or ""
        call = self._calls.get(delta.index)
        if call is None:
            call = _Block("tool", tool_id=delta.id or new_tool_call_id(), name=function.name or "")
            self._calls[delta.index] = call
            if self._must_hold():
                self._held.append(call)
            else:
                self._close_open()
                self._start(call)
        if call is self._open:
            self._append(fragment)
        elif any(block is call for block in self._held):
            call.data += fragment
        elif fragment.strip():
            raise _bad_gateway(f"The provider sent arguments for tool call {call.name!r} after they were complete.")

    def _must_hold(self) -> bool:
        """Whether new content has to wait: the open tool call's arguments are incomplete."""
        if not self._holding and self._open is not None and self._open.kind == "tool":
            self._holding = not _is_json(self._open.data)
        return self._holding

    def _start(self, block: _Block) -> None:
        self._events.append(BlockStart(self._next_index, block.kind, block.tool_id, block.name))
        self._open = block

    def _append(self, data: str) -> None:
        """Stream `data` into the open block."""
        block = self._open
        assert block is not None
        block.data += data
        # Whitespace alone is not JSON yet; an SDK's partial-JSON parser would choke on it.
        if data and (block.kind == "text" or block.data.strip()):
            self._events.append(BlockDelta(self._next_index, block.kind, data))

    def _close_open(self) -> None:
        block = self._open
        if block is None:
            return
        if block.kind == "tool":
            tool_input(block.data, block.name)  # arguments a provider broke are a 502, not a bad block
            if not block.data.strip():  # a call without arguments still owes its caller a JSON input
                self._append("{}")
        self._events.append(BlockStop(self._next_index, block.kind))
        self._next_index += 1
        self._open = None

    def _take(self) -> list[BlockEvent]:
        events, self._events = self._events, []
        return events


def tool_input(arguments: str | None, name: str) -> dict[str, Any]:
    """A tool call's input object: {} for none or blank; anything but a JSON object is the provider's fault, a 502."""
    if arguments is None or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad_gateway(f"The provider returned arguments for tool {name!r} that are not a JSON object.")
    return parsed


def _is_json(arguments: str) -> bool:
    """Whether `arguments` is a whole JSON document, which nothing valid can extend."""
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return False
    return True


def _bad_gateway(message: str) -> OrqenError:
    return OrqenError(INTERNAL, message, http_status=502)
