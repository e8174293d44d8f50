"""Reading proxied uploads as frames: the model found on the way, files streamed, limits enforced."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from orqen.v1 import dispatch_pb2
from orqen_common.errors import OrqenError
from orqen_edge.errors import not_proxied_message
from orqen_edge.proxy import upload as proxy_upload
from orqen_edge.proxy.upload import open_multipart

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _field(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def _file(name: str, filename: str, data: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return (head + "Content-Type: audio/mpeg\r\n\r\n").encode() + data + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def _chunks(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _all(frames: AsyncIterator[dispatch_pb2.ProxyRequestFrame]) -> list[dispatch_pb2.ProxyRequestFrame]:
    return [frame async for frame in frames]


def _file_bytes(frames: list[dispatch_pb2.ProxyRequestFrame]) -> bytes:
    return b"".join(f.file_chunk for f in frames if f.WhichOneof("frame") == "file_chunk")


async def test_the_model_before_the_file_lets_the_file_stream() -> None:
    audio = bytes(range(256)) * 50
    body = _form(_field("model", "whisper-1"), _field("stream", "true"), _file("file", "a.mp3", audio))
    consumed = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in _chunks(body):
            consumed += len(chunk)
            yield chunk

    opening = await open_multipart(CONTENT_TYPE, counted(), limit=1 << 20)
    assert (opening.model, opening.stream) == ("whisper-1", False)  # stream came after the model
    assert consumed < len(body)  # the call can start before the file arrived
    frames = await _all(opening.frames)
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds[:3] == ["field", "field", "file"] and set(kinds[3:]) == {"file_chunk"}
    assert (frames[2].file.name, frames[2].file.filename, frames[2].file.content_type) == (
        "file",
        "a.mp3",
        "audio/mpeg",
    )
    assert _file_bytes(frames) == audio


async def test_a_file_before_the_model_is_spooled_and_replayed_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_upload, "SPOOL_MEMORY_BYTES", 1000)  # the spool goes to disk
    audio = hashlib.sha256(b"x").digest() * 3000
    body = _form(_field("stream", "true"), _file("file", "late.mp3", audio), _field("model", "whisper-1"))
    opening = await open_multipart(CONTENT_TYPE, _chunks(body, 4096), limit=1 << 20)
    assert (opening.model, opening.stream) == ("whisper-1", True)
    frames = await _all(opening.frames)
    assert [f.WhichOneof("frame") for f in frames][:2] == ["field", "file"]
    assert frames[-1].field.name == "model"
    assert _file_bytes(frames) == audio


async def test_an_upload_past_the_limit_is_a_413_while_it_streams() -> None:
    body = _form(_field("model", "whisper-1"), _file("file", "a.mp3", b"\0" * 50_000))
    opening = await open_multipart(CONTENT_TYPE, _chunks(body), limit=20_000)
    with pytest.raises(OrqenError) as refused:
        await _all(opening.frames)
    assert refused.value.http_status == 413


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("application/json", b"{}", 415, "multipart/form-data"),
        ("multipart/form-data", b"", 400, "no boundary"),
        (CONTENT_TYPE, _field("model", "m")[:-2], 400, "Unexpected end"),
        (CONTENT_TYPE, _form(_field("model", "ok"), b"garbage"), 400, "Malformed"),
    ],
)
async def test_malformed_uploads_are_400s_that_say_why(
    content_type: str, body: bytes, status: int, message: str
) -> None:
    with pytest.raises(OrqenError) as refused:
        opening = await open_multipart(content_type, _chunks(body), limit=1 << 20)
        await _all(opening.frames)
    assert refused.value.http_status == status and message in refused.value.message


async def test_a_text_field_must_be_utf8() -> None:
    body = _form(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n'.encode() + b"\xff\xfe\r\n")
    with pytest.raises(OrqenError, match="not UTF-8"):
        await open_multipart(CONTENT_TYPE, _chunks(body), limit=1 << 20)


@pytest.mark.parametrize(
    ("path", "proxied"),
    [
        ("/v1/files", False),
        ("/v1/files/file-123/content", False),
        ("/v2/proxy/batches", False),
        ("/v3/router/vector_stores/vs_1/files", False),
        ("/v1/embeddings", True),
        ("/v1/filesystem", True),
        ("/v9/files", True),
    ],
)
def test_object_lifecycle_paths_are_named_as_not_proxied(path: str, proxied: bool) -> None:
    message = not_proxied_message(path)
    assert (message is None) == proxied
    if message:
        assert "intentionally not proxied" in message
