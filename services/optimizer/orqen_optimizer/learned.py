"""Tools to forward beyond the router's K, from what the account's models called before.

Accounting learns, per account, which tools follow which in a session, which are used in the
same sessions, and which answer asks that the router ranks alike (orqen_common.tool_learning).
For one plan, the anchors are what the request itself says: the tool called last in the
conversation (what follows it), the tools already called and those the router keeps (what is
used with them), and the router's top candidate (what answers asks like this one). Their
statistics are read by one Redis script (`_READ`), and a tool of the request the router
left out is added when the evidence says the model likely calls it:

- its estimated probability (the pair's decayed count over its anchor's) reaches
  MIN_PROBABILITY, or half of it when the router ranked the tool just below its cut (the
  rerank near the cut: scores that nearly kept it, and usage that says it is needed);
- co-use counts at CO_USE_WEIGHT of its share: used in the same session is weaker evidence
  of being needed in this turn than following the last call;
- the anchor's own decayed count reaches MIN_SUPPORT, so one session teaches nothing alone.

At most `max_added` tools are added, never beyond the account's K cap. A Redis that fails
costs the plan its learned part only, and reads are skipped for PAUSE_SECONDS after a failure
so a Redis in trouble does not slow every plan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError

from orqen.v1 import optimizer_pb2
from orqen_common.tool_learning import ASKED, CO_USED, FOLLOWS, TOTAL, decayed, relation_key
from orqen_optimizer.tool_router import called_in

log = structlog.get_logger(__name__)

MIN_PROBABILITY = 0.5  # the training split's choice (make bench-learning ARGS=--tune)
CO_USE_WEIGHT = 0.5
MIN_SUPPORT = 2.0
RERANK_WINDOW = 5  # the tools ranked right below the cut that need only half the evidence
MAX_ANCHORS = 16  # co-use anchors read per plan, most recently called first
PAUSE_SECONDS = 5.0
_REASONS = {FOLLOWS: "follows {}", CO_USED: "co-used with {}", ASKED: "asked like {}"}
# Each statistic that exists, as its position among KEYS and its fields: one command for a plan's
# 2 to 18 statistics. A pipeline of as many HGETALLs took 110 us of the plan's CPU in redis-py for an
# account that has learned nothing (18 keys), this 50. An account's keys share one hash tag (one slot).
_READ = """
local found = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then
    found[#found + 1] = i
    found[#found + 1] = fields
  end
end
return found
"""


@dataclass(frozen=True, slots=True)
class Anchors:
    """What one request's learned statistics are read for."""

    last_called: str | None
    co_used: Sequence[str]
    top: str | None

    @classmethod
    def of(cls, chat: dict[str, Any], kept: Sequence[str], top: str | None) -> Anchors:
        called = called_in(chat.get("messages"))
        recent = list(dict.fromkeys(reversed(called)))  # most recent first, once each
        co_used = list(dict.fromkeys([*recent, *kept]))[:MAX_ANCHORS]
        return cls(called[-1] if called else None, co_used, top)

    def keys(self) -> list[tuple[str, str]]:
        """(relation, anchor) of each statistic to read."""
        keys = [(FOLLOWS, self.last_called)] if self.last_called else []
        keys += [(CO_USED, anchor) for anchor in self.co_used]
        return keys + ([(ASKED, self.top)] if self.top else [])


def likely_tools(statistics: Sequence[tuple[str, str, dict[bytes, bytes]]], now: float) -> dict[str, tuple[float, str]]:
    """Per tool, its best estimated probability of being called and why, from (relation, anchor, hash)."""
    best: dict[str, tuple[float, str]] = {}
    for relation, anchor, fields in statistics:
        counts = {name.decode(): float(value) for name, value in fields.items()}
        total = counts.pop(TOTAL, 0.0)
        if not total or decayed(total, now) < MIN_SUPPORT:
            continue
        for tool, count in counts.items():
            share = min(count / total, 1.0)
            score = round(share * CO_USE_WEIGHT if relation == CO_USED else share, 4)
            if score > best.get(tool, (0.0, ""))[0]:
                best[tool] = (score, f"{_REASONS[relation].format(anchor)} ({share:.2f})")
    return best


def chosen(
    likely: dict[str, tuple[float, str]],
    offered: Sequence[str],
    kept: Sequence[str],
    below_cut: Sequence[str],
    room: int,
) -> list[optimizer_pb2.LearnedTool]:
    """The tools to add, most likely first: offered, not kept, likely enough, at most `room`."""
    near = set(below_cut[:RERANK_WINDOW])
    excluded, available = set(kept), set(offered)
    added = [
        optimizer_pb2.LearnedTool(name=tool, reason=reason, score=score)
        for tool, (score, reason) in likely.items()
        if tool in available
        and tool not in excluded
        and score >= (MIN_PROBABILITY / 2 if tool in near else MIN_PROBABILITY)
    ]
    added.sort(key=lambda t: (-t.score, t.name))
    return added[: max(room, 0)]


class LearnedUsage:
    """Reads an account's learned tool usage for a plan and picks the tools it adds."""

    def __init__(self, redis: Redis, max_added: int = 3, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._script = redis.register_script(_READ)
        self._max_added = max_added
        self._clock = clock
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def additions(
        self,
        account_id: str,
        chat: dict[str, Any],
        offered: Sequence[str],
        ranked: Sequence[str],
        kept: Sequence[str],
        k_cap: int,
    ) -> list[optimizer_pb2.LearnedTool]:
        """Tools of `offered` to forward beyond `kept` (the router's choice; `ranked`: its order, best first)."""
        room = min(self._max_added, k_cap - len(kept)) if k_cap else self._max_added
        if room <= 0 or not account_id:
            return []
        anchors = Anchors.of(chat, kept, ranked[0] if ranked else None)
        statistics = self._read(account_id, anchors.keys())
        if not statistics:
            return []
        kept_names = set(kept)
        below_cut = [name for name in ranked if name not in kept_names]
        return chosen(likely_tools(statistics, self._clock()), offered, kept, below_cut, room)

    def _read(self, account_id: str, keys: list[tuple[str, str]]) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """The statistics of `keys` that exist, in one round trip; none while Redis is failing."""
        if not keys or self._clock() < self._paused_until:
            return []
        try:
            found = self._script(keys=[relation_key(account_id, relation, anchor) for relation, anchor in keys])
        except RedisError as err:
            with self._lock:
                self._paused_until = self._clock() + PAUSE_SECONDS
            log.warning("learned tool usage unavailable; plans go without it for a while", error=str(err))
            return []
        statistics = []
        for position, fields in zip(found[::2], found[1::2], strict=True):
            relation, anchor = keys[position - 1]
            statistics.append((relation, anchor, dict(zip(fields[::2], fields[1::2], strict=True))))
        return statistics
