"""The response cache's terms every service agrees on: how a request may use it, how long an answer is kept.

Dispatch keeps the cache (orqen_dispatch.response_cache); the edge checks the x-orqen-cache
headers, and accounting an account's cache settings, against these same values.
"""

from __future__ import annotations

from typing import Literal

# "use": answer from the cache when it holds the answer, else call and store it; "skip": neither;
# "refresh": call upstream and replace the stored answer.
CacheMode = Literal["use", "skip", "refresh"]
CACHE_MODES: tuple[CacheMode, ...] = ("use", "skip", "refresh")
# The longest an answer may be kept: a week.
MAX_CACHE_TTL_SECONDS = 7 * 24 * 3600
# How long an account's answers are kept until it says otherwise.
DEFAULT_CACHE_TTL_SECONDS = 3600
