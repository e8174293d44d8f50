"""Strings a caller chooses that Orqen repeats in headers, logs and rows: checked where they enter.

A model name or a session id travels into response headers (`x-orqen-model`), log lines,
request events and Postgres rows. A NUL or control character there breaks the response, the
log or the row, so such strings are refused with a 400 in the caller's SDK shape before
anything is sent upstream. Free text (key names, tool names) is checked by
orqen_common.caller_text.checked_text.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from orqen_common.errors import invalid_request

MAX_MODEL_NAME = 256
# Model ids are printable ASCII without spaces at every provider (ids, ARNs, paths, tags).
_MODEL_NAME = re.compile(rf"[\x21-\x7e]{{1,{MAX_MODEL_NAME}}}")
# What a header value can carry as it is: printable ASCII and the space.
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")


def checked_model(model: str, field: str = "model") -> str:
    """`model` if it can name a model: 1 to MAX_MODEL_NAME printable ASCII characters, no space."""
    if not _MODEL_NAME.fullmatch(model):
        raise invalid_request(
            f"Invalid {field} {_shown(model)}: a model name is 1 to {MAX_MODEL_NAME} printable ASCII characters "
            "without spaces or control characters."
        )
    return model


def checked_header_text(value: str, header: str) -> str:
    """A header's value that Orqen stores (the session id): printable ASCII only."""
    if not _HEADER_TEXT.fullmatch(value):
        raise invalid_request(f"Invalid {header} header {_shown(value)}: only printable ASCII characters are allowed.")
    return value


def header_safe(value: str) -> str:
    """`value` as a response header can carry it: characters outside printable ASCII percent-encoded.

    Values Orqen puts in headers can come from a provider's answer (the model that answered),
    which no check at the edge covers.
    """
    if _HEADER_TEXT.fullmatch(value):
        return value
    return "".join(c if " " <= c <= "~" else quote(c, safe="") for c in value)


def _shown(value: str) -> str:
    """The value as an error message may quote it: escaped, and cut short."""
    return ascii(value[:80]) + ("..." if len(value) > 80 else "")
