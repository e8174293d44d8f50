"""The request body of a proxied call, rebuilt from the edge's frames for the upstream.

A JSON body is read whole (it is bounded by the edge's body limit) so the model can be
renamed for the provider and the call retried. A multipart upload is re-encoded as it
arrives: text fields and file bytes are written to the upstream in the order the caller
sent them, the `model` field renamed, and nothing of a file is held beyond one frame.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson

from orqen.v1 import dispatch_pb2
from orqen_common.errors import invalid_request

# A JSON body larger than this did not come through the edge's limits.
MAX_JSON_BYTES = 64 * 1024 * 1024


async def read_json_body(frames: AsyncIterator[dispatch_pb2.ProxyRequestFrame]) -> dict[str, Any]:
    """The JSON object the json_chunk frames carry."""
    parts: list[bytes] = []
    size = 0
    async for frame in frames:
        if frame.WhichOneof("frame") != "json_chunk":
            raise invalid_request("A JSON proxy body carries only json_chunk frames after its head.")
        size += len(frame.json_chunk)
        if size > MAX_JSON_BYTES:
            raise invalid_request(f"The JSON body is larger than {MAX_JSON_BYTES} bytes.", http_status=413)
        parts.append(frame.json_chunk)
    try:
        body = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def json_for_upstream(body: dict[str, Any], model: str) -> bytes:
    """The body with the model the provider knows it by (`openai/gpt-x` -> `gpt-x`)."""
    if model and body.get("model") != model:
        body = {**body, "model": model}
    return orjson.dumps(body)


class MultipartEncoder:
    """Encodes the edge's field and file frames as a multipart/form-data stream."""

    def __init__(self, frames: AsyncIterator[dispatch_pb2.ProxyRequestFrame], model: str) -> None:
        """`model`: the value the `model` field is sent with (empty: as the caller wrote it)."""
        self._frames = frames
        self._model = model
        self.boundary = f"orqen-{secrets.token_hex(16)}"
        self._reading: asyncio.Future[dispatch_pb2.ProxyRequestFrame | None] | None = None

    async def _next(self) -> dispatch_pb2.ProxyRequestFrame | None:
        # Shielded: aiohttp cancels its body writer once the answer is in, and a cancelled read
        # would break the caller's gRPC stream; `settle` lets an interrupted read finish.
        self._reading = asyncio.ensure_future(anext(self._frames, None))
        frame = await asyncio.shield(self._reading)
        self._reading = None
        return frame

    async def settle(self) -> None:
        """Wait for a read of the caller's frames that the upload's sender left under way."""
        if self._reading is not None:
            await self._reading
            self._reading = None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        delimiter = f"--{self.boundary}\r\n".encode()
        in_file = False
        while (frame := await self._next()) is not None:
            kind = frame.WhichOneof("frame")
            if kind == "file_chunk":
                if not in_file:
                    raise invalid_request("File bytes arrived outside a file part.")
                if frame.file_chunk:
                    yield frame.file_chunk
                continue
            opening = b"\r\n" + delimiter if in_file else delimiter
            if kind == "field":
                value = self._model if frame.field.name == "model" and self._model else frame.field.value
                in_file = False
                yield opening + _disposition(frame.field.name) + b"\r\n\r\n" + value.encode() + b"\r\n"
            elif kind == "file":
                part = frame.file
                content_type = _header_safe(part.content_type or "application/octet-stream")
                in_file = True
                yield (
                    opening
                    + _disposition(part.name, part.filename)
                    + f"\r\nContent-Type: {content_type}\r\n\r\n".encode()
                )
            else:
                raise invalid_request(f"A multipart proxy body cannot carry a {kind} frame.")
        yield (b"\r\n" if in_file else b"") + f"--{self.boundary}--\r\n".encode()


def _disposition(name: str, filename: str | None = None) -> bytes:
    header = f'Content-Disposition: form-data; name="{_quoted(name)}"'
    if filename is not None:
        header += f'; filename="{_quoted(filename)}"'
    return header.encode()


def _quoted(value: str) -> str:
    """A header parameter value as browsers write it (WHATWG): quotes and line breaks escaped."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")
