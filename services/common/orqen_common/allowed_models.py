"""A key's allowed models: names or glob patterns ("gpt-4o*", "anthropic/*"), matched case-sensitively.

The edge checks the model a request names; dispatch keeps what a routing string (orqen/*) picks
and the account's fallbacks to the same list, so a restricted key is answered only by models it may use.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

ROUTING_PREFIX = "orqen/"


def model_allowed(model: str, patterns: Sequence[str]) -> bool:
    """True when `patterns` is empty (no restriction) or one of them matches `model`."""
    return not patterns or any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)
