"""The response cache as a caller steers and sees it: the x-orqen-cache request and response headers.

Dispatch keeps the cache (orqen_dispatch.response_cache): the edge only checks what the caller
asked for and passes it on with the request, and reports what happened in the answer's headers.
"""

from __future__ import annotations

from orqen_common.errors import invalid_request
from orqen_common.response_cache import CACHE_MODES, MAX_CACHE_TTL_SECONDS

CACHE_HEADER = "x-orqen-cache"
CACHE_TTL_HEADER = "x-orqen-cache-ttl"


def requested_cache(mode: str | None, ttl: str | None) -> tuple[str, int]:
    """The cache mode ("" for the account's setting) and TTL (0 for the account's) a request asks for.

    A 400 in the caller's SDK shape for a value that is neither.
    """
    mode = (mode or "").strip().lower()
    if mode and mode not in CACHE_MODES:
        raise invalid_request(f"Invalid {CACHE_HEADER} header: expected one of {', '.join(CACHE_MODES)}.")
    ttl = (ttl or "").strip()
    if not ttl:
        return mode, 0
    if not (len(ttl) <= 7 and ttl.isascii() and ttl.isdigit() and 1 <= int(ttl) <= MAX_CACHE_TTL_SECONDS):
        raise invalid_request(
            f"Invalid {CACHE_TTL_HEADER} header: a whole number of seconds, 1 to {MAX_CACHE_TTL_SECONDS}."
        )
    return mode, int(ttl)


def cache_headers(status: str) -> dict[str, str]:
    """x-orqen-cache of an answer: "hit" when it came from the cache, "miss" for every other answer."""
    return {CACHE_HEADER: "hit" if status == "hit" else "miss"}
