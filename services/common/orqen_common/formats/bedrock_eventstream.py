"""Encoding of `application/vnd.amazon.eventstream` frames, as Bedrock's ConverseStream sends them.

A frame is: total length (4 bytes), headers length (4), CRC32 of those 8 bytes (4),
headers, payload, CRC32 of everything before it (4); integers big-endian. Only string
headers (type 7) are needed. Decoding is botocore's job (`botocore.eventstream`).

The payloads are JSON the caller encodes: typed ConverseStream events go through
`orqen_common.formats.bedrock.frame`.
"""

from __future__ import annotations

import binascii
import struct

import msgspec

_STRING_HEADER = 7


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame with these string headers and this payload."""
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(event_type: str, payload: bytes) -> bytes:
    """One event, e.g. `contentBlockDelta` with its JSON payload."""
    return encode_frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        payload,
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled exception, e.g. `throttlingException`; botocore raises EventStreamError for it."""
    return encode_frame(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        msgspec.json.encode({"message": message}),
    )


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING_HEADER, len(raw_value)) + raw_value
