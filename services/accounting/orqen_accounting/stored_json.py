"""Messages kept in jsonb columns (a request's attempts and routing trace), and back.

JSON rather than serialized protobuf so the rows stay readable and queryable in SQL; the
field names are the proto's, so the two never drift apart.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def plain_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def from_json(stored: str, message: M) -> M:
    """Fill `message` from a stored object; fields this version does not know are ignored."""
    return ParseDict(orjson.loads(stored), message, ignore_unknown_fields=True)


def list_from_json(stored: str, message_type: type[M]) -> list[M]:
    return [ParseDict(item, message_type(), ignore_unknown_fields=True) for item in orjson.loads(stored)]
