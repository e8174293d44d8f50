"""Reading a proxied request body as Dispatch.Proxy frames, without holding a whole upload.

A JSON body is small (the edge's body limit) and read whole: its `model` picks the
provider. A multipart/form-data upload (audio, images) is parsed as it arrives: text
fields become field frames, files become a file frame and their bytes in chunks. The
model is a form field, and SDKs send it before the file, so the call usually starts at
once; a client that puts the file first (`curl -F file=@a.mp3 -F model=…`) has the file
spooled (in memory up to `SPOOL_MEMORY_BYTES`, then on disk) until the model arrives, and a
form without one (image variations may omit it) is spooled whole before the call starts.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from litestar import Request
from multipart import MultipartSegment, ParserError, PushMultipartParser, parse_options_header

from orqen.v1 import dispatch_pb2
from orqen_common.errors import invalid_request
from orqen_edge.request_body import read_json_object

Frame = dispatch_pb2.ProxyRequestFrame
# Bytes per frame to dispatch: well under gRPC's message limit, few enough frames for a large file.
CHUNK_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
# A text field (model, prompt, language, ...) is small; a larger one is a file sent without a filename.
MAX_FIELD_BYTES = 1024 * 1024
MAX_PARTS = 1000


@dataclass
class Opening:
    """What the edge learned of a request before calling dispatch, and the frames of its body."""

    model: str
    stream: bool
    frames: AsyncIterator[Frame]


async def open_json(request: Request[Any, Any, Any]) -> Opening:
    """A JSON body: its model and stream flag, and its bytes as they came, in chunks."""
    body = await read_json_object(request)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid_request("'model' must be a string.")
    raw = await request.body()

    async def frames() -> AsyncIterator[Frame]:
        for start in range(0, len(raw), CHUNK_BYTES):
            yield Frame(json_chunk=raw[start : start + CHUNK_BYTES])

    return Opening(model or "", body.get("stream") is True, frames())


async def open_multipart(content_type: str, body: AsyncIterator[bytes], limit: int) -> Opening:
    """A multipart upload: read until its model field (see the module docstring); the rest streams."""
    media_type, options = parse_options_header(content_type)
    if media_type.lower() != "multipart/form-data":
        raise invalid_request(
            f"Content-Type must be multipart/form-data, got {media_type or 'none'!r}.", http_status=415
        )
    if not options.get("boundary"):
        raise invalid_request("The multipart/form-data Content-Type has no boundary.")
    parts = _form_frames(body, options["boundary"], limit)
    held = _Held()
    model, stream = "", False
    async for frame in parts:
        if frame.WhichOneof("frame") == "file_chunk":
            held.spool(frame.file_chunk)
            continue
        held.frames.append(frame)
        if frame.WhichOneof("frame") == "field":
            if frame.field.name == "stream":
                stream = frame.field.value.strip().lower() == "true"
            elif frame.field.name == "model":
                model = frame.field.value
                break
    return Opening(model, stream, held.then(parts))


@dataclass
class _Held:
    """The frames read before the model was known; file bytes among them spooled."""

    frames: list[Frame | int] = field(default_factory=list)  # an int: that many spooled file bytes
    _file: IO[bytes] | None = None

    def spool(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115  # closed in then()
        self._file.write(chunk)
        self.frames.append(len(chunk))

    async def then(self, rest: AsyncIterator[Frame]) -> AsyncIterator[Frame]:
        """The held frames, then the rest of the body as it arrives."""
        try:
            if self._file is not None:
                self._file.seek(0)
            for item in self.frames:
                if isinstance(item, int):
                    assert self._file is not None
                    yield Frame(file_chunk=self._file.read(item))
                else:
                    yield item
        finally:
            if self._file is not None:
                self._file.close()
        async for frame in rest:
            yield frame


async def _form_frames(chunks: AsyncIterator[bytes], boundary: str, limit: int) -> AsyncIterator[Frame]:
    """The form's fields and files as frames, parsed as the body arrives; 413 past `limit` bytes."""
    parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS)
    received = 0
    text: _TextField | None = None
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise invalid_request(f"The upload is larger than {limit} bytes.", http_status=413)
            for event in parser.parse(chunk):
                frame, text = _frame(event, text)
                if frame is not None:
                    yield frame
        for event in parser.parse(b""):
            frame, text = _frame(event, text)
            if frame is not None:
                yield frame
    except ParserError as err:
        # The parser also refuses a body that ends before its closing boundary.
        raise invalid_request(f"Malformed multipart/form-data body: {err}") from None


@dataclass
class _TextField:
    name: str
    value: bytearray = field(default_factory=bytearray)


def _frame(event: MultipartSegment | bytes | None, text: _TextField | None) -> tuple[Frame | None, _TextField | None]:
    """The frame one parser event makes (None while a text field is being read), and the text field under way."""
    if isinstance(event, MultipartSegment):
        if event.filename is None:
            return None, _TextField(event.name)
        part = dispatch_pb2.FilePart(name=event.name, filename=event.filename, content_type=event.content_type or "")
        return Frame(file=part), None
    if isinstance(event, bytes):
        if text is None:
            return Frame(file_chunk=event), None
        if len(text.value) + len(event) > MAX_FIELD_BYTES:
            raise invalid_request(f"Form field {text.name!r} is over {MAX_FIELD_BYTES} bytes; send it as a file.")
        text.value += event
        return None, text
    if text is None:  # the end of a file part
        return None, None
    try:
        value = text.value.decode()
    except UnicodeDecodeError:
        raise invalid_request(f"Form field {text.name!r} is not UTF-8 text.") from None
    return Frame(field=dispatch_pb2.FormField(name=text.name, value=value)), None
