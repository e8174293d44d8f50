"""After a fault run: every answered request recorded exactly once, and every figure agreeing with the log.

The run's account is its own, so its request log holds exactly the run's requests. The log is
read through the account API (as a user would), and so are the figures derived from it:
the usage summary and daily usage (accounting's rollups), the sessions, and billing's meter.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

_PAGE = 200


@dataclass
class Reconciliation:
    """What the records say about the requests a client saw answered."""

    # Request ids answered 200 that the request log lacks, or holds more than once or not as a 200.
    lost: set[str] = field(default_factory=set)
    doubled: set[str] = field(default_factory=set)
    # Figures (rollups, sessions, billing) that disagree with the request log, each as "what: a != b".
    disagreements: list[str] = field(default_factory=list)
    # Entries of the log the client did not see answered 200 (e.g. a stream cut by a killed edge).
    logged_without_ok: int = 0
    logged: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.disagreements)


async def _get(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await http.get(path, params=params)
    response.raise_for_status()
    return response.json()


async def request_log(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every entry of the account's request log, page by page."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await _get(http, "/v1/account/requests", limit=_PAGE, **({"cursor": cursor} if cursor else {}))
        entries.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return entries


async def _sessions(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await _get(http, "/v1/account/sessions", limit=_PAGE, **({"cursor": cursor} if cursor else {}))
        sessions.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return sessions


async def settled_log(http: httpx.AsyncClient, expected: set[str], wait_seconds: float) -> list[dict[str, Any]]:
    """The request log once it holds every `expected` id and has stopped growing (or `wait_seconds` passed).

    Events buffered during a fault arrive late; so do the records of requests whose client
    never saw an answer, which is why the log must also stop growing.
    """
    deadline = time.monotonic() + wait_seconds
    previous = -1
    while True:
        entries = await request_log(http)
        ids = {entry["request_id"] for entry in entries}
        if (expected <= ids and len(entries) == previous) or time.monotonic() > deadline:
            return entries
        previous = len(entries)
        await asyncio.sleep(3.0)


def _disagree(what: str, derived: object, from_log: object, out: list[str]) -> None:
    if derived != from_log:
        out.append(f"{what}: {derived} != {from_log} in the request log")


def _totals(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals = {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0}
    for entry in entries:
        totals["requests"] += 1
        totals["errors"] += entry["status"] >= 400
        totals["input_tokens"] += entry["input_tokens"]
        totals["output_tokens"] += entry["output_tokens"]
    return totals


def _pick(figures: dict[str, Any], names: Iterable[str]) -> dict[str, int]:
    return {name: int(figures[name]) for name in names}


async def reconcile(http: httpx.AsyncClient, ok_ids: Iterable[str], wait_seconds: float = 180.0) -> Reconciliation:
    """Check the records of the account `http` authenticates as against the ids a client saw answered 200."""
    ok = set(ok_ids)
    entries = await settled_log(http, ok, wait_seconds)
    result = Reconciliation(logged=len(entries))
    times = Counter(entry["request_id"] for entry in entries)
    status = {entry["request_id"]: entry["status"] for entry in entries}
    result.lost = {rid for rid in ok if times[rid] == 0 or status[rid] != 200}
    result.doubled = {rid for rid, n in times.items() if n > 1}
    result.logged_without_ok = sum(1 for rid in times if rid not in ok)

    totals = _totals(entries)
    names = list(totals)
    summary = await _get(http, "/v1/account/usage/summary")
    _disagree("usage summary", _pick(summary, names), totals, result.disagreements)
    daily = await _get(http, "/v1/account/usage/daily", days=2)
    day_totals: Counter[str] = Counter()
    for day in daily["data"]:
        day_totals.update(_pick(day, names))
    _disagree("daily usage", dict(day_totals), totals, result.disagreements)

    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry["session_id"]:
            by_session[entry["session_id"]].append(entry)
    sessions = {s["session_id"]: s for s in await _sessions(http)}
    _disagree("sessions", sorted(sessions), sorted(by_session), result.disagreements)
    for session_id, logged in by_session.items():
        if session_id in sessions:
            _disagree(
                f"session {session_id}", _pick(sessions[session_id], names), _totals(logged), result.disagreements
            )

    logged = {"requests": totals["requests"], "tokens": totals["input_tokens"] + totals["output_tokens"]}
    _disagree("billing meter", await _metered(http, logged, wait_seconds), logged, result.disagreements)
    return result


async def _metered(http: httpx.AsyncClient, expected: dict[str, int], wait_seconds: float) -> dict[str, int]:
    """Billing's meter for the month, once it shows `expected` (billing consumes the events on its own)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        billing = await _get(http, "/v1/account/billing")
        metered = {"requests": billing["requests"], "tokens": billing["tokens"]}
        if metered == expected or time.monotonic() > deadline:
            return metered
        await asyncio.sleep(2.0)
