"""What the router learns from the tools models call: the Redis layout its writer and readers share.

Accounting writes (on each ingested request whose answer called tools), the optimizer reads
(one pipelined round trip per routed plan), and the account API shows and resets. Per account,
decayed counts of:

- `follows:<A>`: tool B called right after tool A in the same session (the sequence),
- `co_used:<A>`: tool B called in a session in which A was called too,
- `asked:<T>`: tool B called in an answer to an ask whose top-routed tool was T. The router's
  top candidate is the cheapest signature of the kind of ask there is: known at plan time
  and in the trace, it needs no second model and groups asks the way the router sees them.

Each is a hash: field B holds the pair's count, the empty field "" the anchor's own (how
often A was followed, A's sessions, asks topped by T), so `count(B) / count("")` estimates
the probability that B is called. Tool names are never empty, so "" names no tool.

Decay: forward decay (Cormode et al., 2009). An event at time t adds `2 ** ((t - EPOCH) /
HALF_LIFE)` instead of 1, so no stored value is ever rewritten to age it: a count read at time
t is the stored value divided by that same weight, and a probability, a ratio of two values
of one moment, needs no division at all. The weights stay within a double's range for about
19 years after EPOCH at a 7-day half-life; KEY_VERSION lets a later layout rebase them.

Redis only ever holds what can be rebuilt: losing it loses the learning, never a record.
All of an account's keys share one hash tag, so they sit in one cluster slot and one Lua
script may touch them all.
"""

from __future__ import annotations

import datetime as dt

HALF_LIFE_SECONDS = 7 * 86_400.0
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
KEY_VERSION = "v1"

FOLLOWS, CO_USED, ASKED = "follows", "co_used", "asked"
RELATIONS = (FOLLOWS, CO_USED, ASKED)
TOTAL = ""  # the hash field holding the anchor's own count
# Per account: the key of the sorted set naming all its other keys (its relations' hashes and its
# sessions' state: tools called so far and the last one), scored by last update (Unix time), which
# bounds their number and lets a reset find them.
INDEX = "index"


def account_prefix(account_id: str) -> str:
    """The prefix of every learning key of the account (with its cluster hash tag)."""
    return f"orqen:learn:{KEY_VERSION}:{{{account_id}}}:"


def relation_key(account_id: str, relation: str, anchor: str) -> str:
    """The hash of the tools in `relation` to `anchor` (one of RELATIONS)."""
    return f"{account_prefix(account_id)}{relation}:{anchor}"


def index_key(account_id: str) -> str:
    return account_prefix(account_id) + INDEX


def weight(now: float) -> float:
    """What an event at Unix time `now` adds to a count (forward decay)."""
    return float(2.0 ** ((now - EPOCH) / HALF_LIFE_SECONDS))


def decayed(stored: float, now: float) -> float:
    """A stored count as read at Unix time `now`: events of one half-life ago count one half."""
    return stored / weight(now)
