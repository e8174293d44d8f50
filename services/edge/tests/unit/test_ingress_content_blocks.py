"""The format-neutral content block sequencer both the Anthropic and the Bedrock ingress render."""

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChunkChoice
from orqen_edge.ingress.content_blocks import BlockDelta, BlockEvent, BlockSequencer, BlockStart, BlockStop, tool_input


def choice(value: dict[str, Any]) -> ChunkChoice:
    return msgspec.convert(value, ChunkChoice)


def text(fragment: str) -> ChunkChoice:
    return choice({"index": 0, "delta": {"content": fragment}, "finish_reason": None})


def call_start(index: int, call_id: str, name: str, arguments: str = "") -> ChunkChoice:
    call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return choice({"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None})


def call_args(index: int, fragment: str) -> ChunkChoice:
    return choice({"index": 0, "delta": {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}})


def finish(reason: str = "stop") -> ChunkChoice:
    return choice({"index": 0, "delta": {}, "finish_reason": reason})


def sequenced(*choices: ChunkChoice) -> list[list[BlockEvent]]:
    """The events each choice produced, in order."""
    blocks = BlockSequencer()
    return [blocks.feed(choice) for choice in choices]


def flat(batches: list[list[BlockEvent]]) -> list[BlockEvent]:
    return [event for batch in batches for event in batch]


def assert_sequential(events: list[BlockEvent]) -> None:
    """One block at a time: start, its deltas, stop; indices count up from 0 and kinds agree."""
    open_block: BlockStart | None = None
    next_index = 0
    for event in events:
        if isinstance(event, BlockStart):
            assert open_block is None and event.index == next_index
            open_block, next_index = event, next_index + 1
        else:
            assert open_block is not None
            assert (event.index, event.kind) == (open_block.index, open_block.kind)
            if isinstance(event, BlockStop):
                open_block = None
    assert open_block is None


def tool_blocks(events: list[BlockEvent]) -> list[tuple[str, str, Any]]:
    """(tool id, name, parsed input) of each tool block, from its joined deltas."""
    starts = {e.index: e for e in events if isinstance(e, BlockStart) and e.kind == "tool"}
    data = {i: "".join(e.data for e in events if isinstance(e, BlockDelta) and e.index == i) for i in starts}
    return [(start.tool_id, start.name, orjson.loads(data[i])) for i, start in sorted(starts.items())]


def texts(events: list[BlockEvent]) -> list[str]:
    """Each text block's text, from its joined deltas."""
    starts = [e.index for e in events if isinstance(e, BlockStart) and e.kind == "text"]
    return ["".join(e.data for e in events if isinstance(e, BlockDelta) and e.index == i) for i in starts]


def test_text_streams_live_in_one_block() -> None:
    batches = sequenced(
        choice({"index": 0, "delta": {"role": "assistant"}}), text("Hel"), text(""), text("lo"), finish()
    )
    assert batches == [
        [],
        [BlockStart(0, "text"), BlockDelta(0, "text", "Hel")],
        [],
        [BlockDelta(0, "text", "lo")],
        [BlockStop(0, "text")],
    ]


def test_sequential_tool_calls_stream_live_one_block_after_another() -> None:
    batches = sequenced(
        text("Checking."),
        call_start(0, "call_0", "weather"),
        call_args(0, '{"city": '),
        call_args(0, '"Paris"}'),
        call_start(1, "call_1", "clock", '{"tz"'),
        call_args(1, ': "CET"}'),
        finish("tool_calls"),
    )
    assert batches == [
        [BlockStart(0, "text"), BlockDelta(0, "text", "Checking.")],
        [BlockStop(0, "text"), BlockStart(1, "tool", "call_0", "weather")],
        [BlockDelta(1, "tool", '{"city": ')],
        [BlockDelta(1, "tool", '"Paris"}')],
        [BlockStop(1, "tool"), BlockStart(2, "tool", "call_1", "clock"), BlockDelta(2, "tool", '{"tz"')],
        [BlockDelta(2, "tool", ': "CET"}')],
        [BlockStop(2, "tool")],
    ]


def test_interleaved_calls_are_held_back_and_sent_whole_in_order() -> None:
    batches = sequenced(
        call_start(0, "call_0", "weather", '{"city": '),
        call_start(1, "call_1", "clock", '{"tz"'),  # call 0 is not complete yet
        call_args(0, '"Par'),  # the open call keeps streaming
        call_args(1, ': "CET"}'),
        text("Done."),
        call_args(0, 'is"}'),
        call_start(2, "call_2", "noop"),
        finish("tool_calls"),
    )
    assert batches[2] == [BlockDelta(0, "tool", '"Par')]
    assert batches[1] == batches[3] == batches[4] == batches[6] == []
    assert batches[-1] == [
        BlockStop(0, "tool"),
        BlockStart(1, "tool", "call_1", "clock"),
        BlockDelta(1, "tool", '{"tz": "CET"}'),
        BlockStop(1, "tool"),
        BlockStart(2, "text"),
        BlockDelta(2, "text", "Done."),
        BlockStop(2, "text"),
        BlockStart(3, "tool", "call_2", "noop"),
        BlockDelta(3, "tool", "{}"),
        BlockStop(3, "tool"),
    ]


def test_text_after_a_complete_call_opens_a_new_block() -> None:
    events = flat(sequenced(call_start(0, "call_0", "clock", "{}"), text("after"), finish()))
    assert events == [
        BlockStart(0, "tool", "call_0", "clock"),
        BlockDelta(0, "tool", "{}"),
        BlockStop(0, "tool"),
        BlockStart(1, "text"),
        BlockDelta(1, "text", "after"),
        BlockStop(1, "text"),
    ]


@pytest.mark.parametrize("arguments", ["", "  \n"])
def test_a_call_without_arguments_gets_an_empty_object(arguments: str) -> None:
    events = flat(sequenced(call_start(0, "call_0", "noop", arguments), finish("tool_calls")))
    assert events == [BlockStart(0, "tool", "call_0", "noop"), BlockDelta(0, "tool", "{}"), BlockStop(0, "tool")]


def test_leading_whitespace_is_not_streamed_alone() -> None:
    batches = sequenced(call_start(0, "call_0", "f", " "), call_args(0, "\n"), call_args(0, "{}"), finish())
    assert batches[:3] == [[BlockStart(0, "tool", "call_0", "f")], [], [BlockDelta(0, "tool", "{}")]]


def test_a_call_without_id_gets_one_and_a_delta_without_index_is_call_0() -> None:
    call = {"function": {"name": "f", "arguments": '{"a": 1}'}}
    [start, *_] = flat(sequenced(choice({"delta": {"tool_calls": [call]}}), finish()))
    assert isinstance(start, BlockStart) and start.kind == "tool" and start.tool_id


def test_arguments_for_a_complete_call_are_a_502_naming_it() -> None:
    blocks = BlockSequencer()
    blocks.feed(call_start(0, "call_0", "lookup", "{}"))
    blocks.feed(call_start(1, "call_1", "other", "{}"))  # closes call 0
    assert blocks.feed(call_args(0, " ")) == []  # whitespace changes nothing
    with pytest.raises(OrqenError) as err:
        blocks.feed(call_args(0, '{"late": 1}'))
    assert err.value.http_status == 502 and "lookup" in err.value.message


@pytest.mark.parametrize(
    "choices",
    [
        [call_start(0, "call_0", "lookup", '{"q": '), finish("tool_calls")],  # cut off
        [call_start(0, "call_0", "lookup", "[1, 2]"), text("then")],  # complete, but not an object
    ],
)
def test_arguments_that_are_not_a_json_object_are_a_502_naming_the_tool(choices: list[dict[str, Any]]) -> None:
    blocks = BlockSequencer()
    with pytest.raises(OrqenError) as err:
        for choice in choices:
            blocks.feed(choice)
    assert err.value.http_status == 502 and "lookup" in err.value.message


def test_nothing_is_read_after_the_finish() -> None:
    blocks = BlockSequencer()
    assert blocks.feed(text("a")) == [BlockStart(0, "text"), BlockDelta(0, "text", "a")]
    assert not blocks.finished
    assert blocks.feed(finish()) == [BlockStop(0, "text")]
    assert blocks.finished
    assert blocks.feed(text("b")) == [] and blocks.feed(finish()) == [] and blocks.finish() == []


def test_finish_without_a_finish_reason_closes_everything() -> None:
    blocks = BlockSequencer()
    blocks.feed(call_start(0, "call_0", "f", '{"a"'))
    blocks.feed(text("held"))
    blocks.feed(call_args(0, ": 1}"))
    events = blocks.finish()
    assert events == [
        BlockStop(0, "tool"),
        BlockStart(1, "text"),
        BlockDelta(1, "text", "held"),
        BlockStop(1, "text"),
    ]
    assert blocks.finished


def test_an_answer_with_no_content_has_no_blocks() -> None:
    assert flat(sequenced(choice({"index": 0, "delta": {"role": "assistant"}}), finish("content_filter"))) == []


# Any interleaving of parallel calls' fragments and text: blocks stay sequential, every call arrives
# whole and in order of first appearance, and no text is lost or reordered.
_ARGS = st.dictionaries(st.sampled_from(["city", "tz", "n"]), st.integers(-999, 999) | st.text(max_size=5), max_size=3)


@st.composite
def _interleaved(draw: st.DrawFn) -> tuple[list[ChunkChoice], list[dict[str, Any]], str]:
    calls = draw(st.lists(_ARGS, max_size=4))
    streams: list[list[ChunkChoice]] = []
    for i, arguments in enumerate(calls):
        encoded = orjson.dumps(arguments).decode()
        if not arguments and draw(st.booleans()):
            encoded = ""  # a call that sends no arguments at all
        cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=4)))
        pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
        streams.append([call_start(i, f"call_{i}", f"tool_{i}", pieces[0])] + [call_args(i, p) for p in pieces[1:]])
    text_pieces = draw(st.lists(st.text(min_size=1, max_size=4), max_size=4))
    streams.append([text(piece) for piece in text_pieces])
    choices: list[ChunkChoice] = []
    while any(streams):
        stream = draw(st.sampled_from([s for s in streams if s]))
        choices.append(stream.pop(0))
    return [*choices, finish("tool_calls")], calls, "".join(text_pieces)


@given(_interleaved())
def test_any_interleaving_gives_whole_calls_in_order(case: tuple[list[ChunkChoice], list[Any], str]) -> None:
    choices, calls, all_text = case
    events = flat(sequenced(*choices))
    assert_sequential(events)
    first_seen = [call.index for c in choices for call in c.delta.tool_calls or () if call.id]
    assert tool_blocks(events) == [(f"call_{i}", f"tool_{i}", calls[i]) for i in first_seen]
    assert "".join(texts(events)) == all_text


@pytest.mark.parametrize(("arguments", "expected"), [(None, {}), ("", {}), (" \n", {}), ('{"a": [1]}', {"a": [1]})])
def test_tool_input(arguments: Any, expected: dict[str, Any]) -> None:
    assert tool_input(arguments, "f") == expected


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]", '"text"', "null"])
def test_tool_input_that_is_not_a_json_object_is_a_502_naming_the_tool(arguments: Any) -> None:
    with pytest.raises(OrqenError) as err:
        tool_input(arguments, "get_weather")
    assert err.value.http_status == 502 and "get_weather" in err.value.message
