"""Reading JSON request bodies with errors the caller can act on."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

import msgspec
import orjson
from litestar import Request

from orqen_common.errors import invalid_request
from orqen_common.formats.openai import decode

T = TypeVar("T", bound=msgspec.Struct)


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The raw body of a JSON request; 415 for another content type.

    The size limit (413) is enforced while the body is read.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise invalid_request(
            f"Content-Type must be application/json, got {content_type or 'none'!r}.", http_status=415
        )
    return await request.body()


async def read_json(request: Request[Any, Any, Any]) -> Any:
    """The parsed JSON body; 415 for another content type, 400 for malformed JSON."""
    raw = await read_body(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise invalid_request(f"Malformed JSON body: {err.msg} at position {err.pos}.") from None


async def read_json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The parsed JSON body, which must be an object; 400 otherwise (and as `read_json`)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


async def read_struct(request: Request[Any, Any, Any], shape: type[T]) -> T:
    """The JSON body decoded strictly into `shape` (the type the route documents with
    orqen_edge.openapi.json_body); a 400 that names the field that does not fit, and 415 as `read_body`."""
    decoder: msgspec.json.Decoder[T] = _decoder(shape)
    return decode(decoder, await read_body(request), "The request body")


@cache
def _decoder(shape: type[T]) -> msgspec.json.Decoder[T]:
    return msgspec.json.Decoder(shape)
