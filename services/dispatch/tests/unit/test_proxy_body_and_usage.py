"""The proxied body re-encoded for the upstream, and the usage read from the answer on its way back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from multipart import MultipartSegment, PushMultipartParser

from orqen.v1 import dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.errors import OrqenError
from orqen_dispatch.proxy_body import MultipartEncoder, json_for_upstream, read_json_body
from orqen_dispatch.proxy_usage import MAX_JSON_BYTES, UsageWatcher, usage_from

Frame = dispatch_pb2.ProxyRequestFrame


async def _frames(*frames: Frame) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


async def _encoded(encoder: MultipartEncoder) -> bytes:
    return b"".join([chunk async for chunk in encoder])


def _parsed(body: bytes, boundary: str) -> list[tuple[str, str | None, str | None, bytes]]:
    """(name, filename, content type, data) of every part, as a standard parser reads them."""
    parts: list[tuple[str, str | None, str | None, bytes]] = []
    parser = PushMultipartParser(boundary)
    for event in [*parser.parse(body), *parser.parse(b"")]:
        if isinstance(event, MultipartSegment):
            parts.append((event.name, event.filename, event.content_type, b""))
        elif isinstance(event, bytes):
            name, filename, content_type, data = parts[-1]
            parts[-1] = (name, filename, content_type, data + event)
    return parts


async def test_fields_and_files_are_encoded_in_order_with_the_model_renamed() -> None:
    audio = bytes(range(256)) * 3 + b"\r\n--fake-boundary\r\n"
    encoder = MultipartEncoder(
        _frames(
            Frame(field=dispatch_pb2.FormField(name="model", value="openai/whisper-1")),
            Frame(file=dispatch_pb2.FilePart(name="file", filename='we"ird\r\nname.mp3', content_type="audio/mpeg")),
            Frame(file_chunk=audio[:100]),
            Frame(file_chunk=audio[100:]),
            Frame(file=dispatch_pb2.FilePart(name="image[]", filename="b.png")),
            Frame(file_chunk=b"png"),
            Frame(field=dispatch_pb2.FormField(name="prompt", value="ünïcode\nlines")),
        ),
        model="whisper-1",
    )
    assert encoder.content_type == f"multipart/form-data; boundary={encoder.boundary}"
    parts = _parsed(await _encoded(encoder), encoder.boundary)
    assert parts == [
        ("model", None, None, b"whisper-1"),
        ("file", 'we"ird\r\nname.mp3', "audio/mpeg", audio),  # escaped on the wire, read back whole
        ("image[]", "b.png", "application/octet-stream", b"png"),
        ("prompt", None, None, "ünïcode\nlines".encode()),
    ]


async def test_without_a_model_rename_the_callers_model_field_goes_as_it_is() -> None:
    encoder = MultipartEncoder(_frames(Frame(field=dispatch_pb2.FormField(name="model", value="dall-e-2"))), model="")
    assert _parsed(await _encoded(encoder), encoder.boundary) == [("model", None, None, b"dall-e-2")]


async def test_file_bytes_outside_a_file_part_are_refused() -> None:
    encoder = MultipartEncoder(_frames(Frame(file_chunk=b"stray")), model="")
    with pytest.raises(OrqenError, match="outside a file part"):
        await _encoded(encoder)


async def test_a_json_body_is_joined_from_its_chunks_and_its_model_renamed() -> None:
    body = await read_json_body(
        _frames(Frame(json_chunk=b'{"model": "local/bge", '), Frame(json_chunk=b'"input": "x"}'))
    )
    assert orjson.loads(json_for_upstream(body, "bge")) == {"model": "bge", "input": "x"}
    with pytest.raises(OrqenError, match="not valid JSON"):
        await read_json_body(_frames(Frame(json_chunk=b'{"model": ')))
    with pytest.raises(OrqenError, match="JSON object"):
        await read_json_body(_frames(Frame(json_chunk=b"[1]")))


def usage(prompt: int, output: int, cached: int) -> TokenUsage:
    """Usage as the families report it: `prompt` counts the cached tokens too."""
    return TokenUsage(input=prompt - cached, output=output, cache_read=cached)


@pytest.mark.parametrize(
    ("answer", "usage"),
    [
        ({"usage": {"prompt_tokens": 7, "total_tokens": 7}}, usage(7, 0, 0)),  # embeddings
        (
            {"usage": {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}},
            usage(5, 3, 2),
        ),
        (
            {"usage": {"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1}}},
            usage(9, 4, 1),
        ),  # responses, gpt-image-1, gpt-4o-transcribe
        (
            {"type": "response.completed", "response": {"usage": {"input_tokens": 2, "output_tokens": 1}}},
            usage(2, 1, 0),
        ),
        ({"results": [], "usage": {"total_tokens": 12}}, usage(12, 0, 0)),  # Jina-style rerank
        ({"results": []}, None),  # moderations
        ({"usage": {"type": "duration", "seconds": 3}}, usage(0, 0, 0)),  # whisper: no tokens
    ],
)
def test_usage_in_every_familys_shape(answer: dict[str, object], usage: TokenUsage | None) -> None:
    assert usage_from(answer) == usage


def test_a_json_answer_in_pieces_is_read_at_its_end() -> None:
    watcher = UsageWatcher("application/json; charset=utf-8")
    raw = orjson.dumps({"data": [1, 2], "model": "bge-m3", "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    for start in range(0, len(raw), 5):
        watcher.feed(raw[start : start + 5])
    assert (watcher.finish(), watcher.model) == (usage(4, 0, 0), "bge-m3")


def test_an_event_stream_split_mid_line_gives_the_last_usage() -> None:
    watcher = UsageWatcher("text/event-stream")
    stream = (
        b'event: response.created\ndata: {"type": "response.created", "response": {"usage": null}}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}\r\n\r\n'
        b'event: response.completed\ndata: {"response": {"usage": {"input_tokens": 6, "output_tokens": 2}}}'
    )
    for start in range(0, len(stream), 7):
        watcher.feed(stream[start : start + 7])
    assert watcher.finish() == usage(6, 2, 0)


def test_binary_and_oversized_answers_report_no_usage() -> None:
    audio = UsageWatcher("audio/mpeg")
    audio.feed(b'{"usage": {"prompt_tokens": 3}}')
    assert audio.finish() == TokenUsage()
    huge = UsageWatcher("application/json")
    huge.feed(b'{"usage": {"prompt_tokens": 3}, "pad": "' + b"x" * MAX_JSON_BYTES + b'"}')
    assert huge.finish() == TokenUsage()
