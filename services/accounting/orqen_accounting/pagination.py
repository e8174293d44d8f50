"""Opaque keyset cursors: the sort key of a page's last row, so the next page starts after it."""

from __future__ import annotations

import base64
import datetime as dt


def encode_cursor(at: dt.datetime, key: str) -> str:
    """An opaque keyset cursor: a time and a tie-breaking key."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The time and key of a cursor; InvalidCursorError when this service did not issue it."""
    try:
        stamp, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return dt.datetime.fromisoformat(stamp), key
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidCursorError(cursor) from err


class InvalidCursorError(ValueError):
    """A pagination cursor that this service did not issue."""
