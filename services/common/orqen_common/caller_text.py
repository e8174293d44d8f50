"""Free text a caller chooses (a key's name, an account's name): checked where it enters a service.

Such text ends up in Postgres rows, log lines and response bodies. Postgres refuses U+0000 in
text, and control characters break log lines and headers, so every entry point refuses them
with the same invalid_request (a 400 at the edge, INVALID_ARGUMENT over gRPC).
"""

from __future__ import annotations

import re

from orqen_common.errors import invalid_request

# C0 and C1 control characters and DEL: never part of a name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def checked_text(value: str, field: str) -> str:
    """A free-text value (a key's name, a tool's name, a credential): anything but control characters.

    The value is not quoted in the error: it may be a secret.
    """
    if _CONTROL.search(value):
        raise invalid_request(f"Invalid '{field}': control characters are not allowed.")
    return value
