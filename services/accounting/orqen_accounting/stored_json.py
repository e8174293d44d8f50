"""Messages kept in jsonb columns (a request's attempts and routing trace), and back.

JSON rather than serialized protobuf so the rows stay readable and queryable in SQL; the
field names are the proto's, so the two never drift apart.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import ParseDict
from google.protobuf.message import Message

from orqen_common.db import storable_text

M = TypeVar("M", bound=Message)


def plain_dict(message: Message) -> dict[str, Any]:
    """The set fields of `message` by proto name, as MessageToDict gives them for these messages.

    Written out because MessageToDict costs most of the ingest's CPU. It covers what the ledger
    stores (scalars, strings, nested and repeated messages); 64-bit integers stay numbers,
    which ParseDict reads back as well as MessageToDict's strings. Strings are made storable
    (jsonb refuses U+0000 as text does).
    """
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = [plain_dict(v) for v in value] if field.is_repeated else plain_dict(value)
        elif field.type == FieldDescriptor.TYPE_STRING:
            out[field.name] = [storable_text(v) for v in value] if field.is_repeated else storable_text(value)
        else:
            out[field.name] = list(value) if field.is_repeated else value
    return out


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def from_json(stored: str, message: M) -> M:
    """Fill `message` from a stored object; fields this version does not know are ignored."""
    return ParseDict(orjson.loads(stored), message, ignore_unknown_fields=True)


def list_from_json(stored: str, message_type: type[M]) -> list[M]:
    return [ParseDict(item, message_type(), ignore_unknown_fields=True) for item in orjson.loads(stored)]
