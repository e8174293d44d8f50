"""The JSON the account API answers with: proto messages as plain JSON, lists and pages of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from litestar.params import QueryParameter

# How many items one page of a list route holds (`?limit=`).
PageLimit = Annotated[int, QueryParameter(ge=1, le=200)]


def plain(message: Message) -> dict[str, Any]:
    """Fields by name, numbers kept as numbers, times as ISO 8601, lists as lists; unset messages, times and
    `optional` scalars (a cost whose price is unknown) as null."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.has_presence and not field.message_type and not message.HasField(field.name):
            value = None
        elif isinstance(value, Timestamp):
            value = value.ToDatetime().isoformat() + "Z" if message.HasField(field.name) else None
        elif isinstance(value, Message):
            value = plain(value) if message.HasField(field.name) else None
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            value = [plain(v) if isinstance(v, Message) else v for v in value]
        out[field.name] = value
    return out


def listing(messages: Iterable[Message]) -> dict[str, Any]:
    """A whole list, in the shape of OpenAI's list objects."""
    return {"object": "list", "data": [plain(m) for m in messages]}


def page(messages: Iterable[Message], next_cursor: str) -> dict[str, Any]:
    """One page of a cursor-paginated list; `next_cursor` is empty on the last page."""
    return {**listing(messages), "has_more": bool(next_cursor), "next_cursor": next_cursor or None}
