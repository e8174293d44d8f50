"""Tool families, inferred from the tool set itself, and the core tools a family in play needs.

An agent's step rarely uses one tool alone: `grep` in a file system needs `cd` to get there,
`add_paragraph` needs the `create_document` it writes into, a Twitter post needs the login. The
ask names the action, not these prerequisites, so similarity ranks them low.

Families, by the first rule that applies to a tool:
- its MCP server: the `server__tool` prefix MCP clients give pooled tools;
- a first sentence of its description that at least `MIN_MEMBERS` tools share (tools written
  together: "This tool belongs to the Gorilla file system.");
- a first name word (not a common verb) that at least `MIN_MEMBERS` tools share (`github_…`).

A family is in play when its tool is the router's best, when its tool ranks first for one of the
ask's steps, or when the conversation already called one of its tools (two kept tools of a
family are not enough: on a small pool most families have two kept tools, and their core tools
cost tokens the ranking needs). Its core tools are then added,
best-scored first, at most `MAX_CORE` per family and within `TOKEN_BUDGET` of the tokens already
kept: the navigation and state tools (`cd`, `ls`, `login`, `authenticate`, `…_login_status`, …),
when a kept tool edits something (`add_…`, `write_…`, `update_…`), the family's tools that
create or open it; the tools whose names say they give what a kept tool's parameters ask for
(`get_zipcode_based_on_city` for `estimate_distance`, whose cities are zipcodes); then, when no
kept tool of the family searches, its search tool (`search_wikipedia` for `get_summary(title)`:
the tools that read a thing need the one that finds it); and, after those,
the tools whose descriptions say they return what a kept tool's parameters are named for
(`geocode_address`, "Returns: … latitude/longitude", for `find_ev_charging_stations(latitude,
longitude)`; only the part of a description from its first "return" on, its argument list aside, so
a family's shared preamble says nothing). The trace gives each added tool's reason.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orqen_optimizer.tools import ToolFacts

MIN_MEMBERS = 3
MAX_CORE = 2
MIN_INPUT_WORD = 5
TOKEN_BUDGET = 0.5  # added core tools may cost at most this share of the kept tools' tokens

# Name words of tools that set up state the other tools of their family work in.
_STATE = frozenset(
    [
        "cd",
        "pwd",
        "ls",
        "login",
        "logon",
        "signin",
        "authenticate",
        "auth",
        "authorize",
        "connect",
        "session",
        "token",
        "status",
    ]
)
_EDITS = frozenset(
    [
        "add",
        "insert",
        "append",
        "edit",
        "update",
        "write",
        "set",
        "format",
        "delete",
        "remove",
        "modify",
        "fill",
        "save",
    ]
)
_CREATES = frozenset(["create", "new", "open", "init", "initialize", "start", "load"])
_SEARCHES = frozenset(["search", "find", "lookup", "query"])
# First name words that say what a tool does, not whose it is.
_VERBS = (
    _EDITS
    | _CREATES
    | frozenset(
        ["get", "list", "find", "search", "fetch", "read", "check", "make", "run", "is", "do", "send", "post", "put"]
    )
)


@dataclass(frozen=True, slots=True)
class Family:
    key: str  # how it was found, for the trace: "server github", "description …", "prefix github"
    members: tuple[int, ...]  # indexes into the request's tools


@dataclass(frozen=True, slots=True)
class Addition:
    tool: int
    reason: str


def families(facts: Sequence[ToolFacts]) -> list[Family]:
    """The families of a request's tools (a tool in none belongs to no family).

    Worked out once per distinct tool list (orqen_optimizer.toolset); the per-name part is kept by name.
    """
    heads = Counter(f.description_head for f in facts if f.description_head)
    prefix = [_prefix(f.name) for f in facts]
    prefixes = Counter(prefix)
    grouped: dict[tuple[str, str], list[int]] = {}
    for i, f in enumerate(facts):
        if "__" in f.name:
            key = ("server", f.name.split("__", 1)[0])
        elif f.description_head and heads[f.description_head] >= MIN_MEMBERS:
            key = ("description", f.description_head[:60])
        elif prefix[i] and prefixes[prefix[i]] >= MIN_MEMBERS and prefix[i] not in _VERBS:
            key = ("prefix", prefix[i])
        else:
            continue
        grouped.setdefault(key, []).append(i)
    return [Family(_label(*key), tuple(members)) for key, members in grouped.items() if len(members) >= 2]


def _label(kind: str, value: str) -> str:
    return f"description '{value}'" if kind == "description" else f"{kind} {value}"


@functools.lru_cache(maxsize=50_000)  # as many as the tool definitions kept (orqen_optimizer.tools)
def _prefix(name: str) -> str:
    return name.replace("-", "_").split("_", 1)[0].lower() if "_" in name.replace("-", "_") else ""


def core_additions(
    facts: Sequence[ToolFacts],
    kept: Sequence[int],
    order: Sequence[int],
    called: set[str],
    leaders: Sequence[int] = (),
    found: Sequence[Family] | None = None,
) -> list[Addition]:
    """The core tools of the families in play that `kept` lacks, best-ranked (`order`) first, with why."""
    if not kept:
        return []
    rank = {tool: position for position, tool in enumerate(order)}
    kept_set = set(kept)
    budget = TOKEN_BUDGET * sum(facts[i].tokens for i in kept)
    added: list[Addition] = []
    for family in families(facts) if found is None else found:
        members = set(family.members)
        if kept[0] in members:
            why = f"family {family.key} is in play (its {facts[kept[0]].name} ranks first)"
        elif members.intersection(leaders):
            leader = next(i for i in leaders if i in members)
            why = f"family {family.key} is in play (its {facts[leader].name} ranks first for a step)"
        elif called and any(facts[i].name in called for i in members):
            why = f"family {family.key} is in play (the conversation called its tools)"
        else:
            continue
        in_kept = members & kept_set
        edits = any(facts[i].name_words & _EDITS for i in in_kept)
        searches = any(facts[i].name_words & _SEARCHES for i in in_kept)
        inputs = _asked(facts, in_kept, lambda tool: tool.input_words)
        takes = _asked(facts, in_kept, lambda tool: tool.takes)
        candidates, described, searched = [], [], []
        for i in sorted(members - kept_set, key=lambda i: rank.get(i, len(rank))):
            words = facts[i].name_words
            provided = sorted(words & inputs.keys())
            if words & _STATE:
                candidates.append(Addition(i, f"{why}: a navigation or state tool"))
            elif edits and words & _CREATES:
                candidates.append(Addition(i, f"{why}: creates what its kept tools edit"))
            elif provided:
                word = provided[0]
                candidates.append(Addition(i, f"{why}: gives the {word} that {inputs[word]} takes"))
            elif not searches and words & _SEARCHES:
                searched.append(Addition(i, f"{why}: finds what its kept tools look up"))
            elif said := sorted(facts[i].gives & takes.keys()):
                word = said[0]
                described.append(Addition(i, f"{why}: returns the {word} that {takes[word]} takes"))
        for addition in [*candidates, *searched, *described][:MAX_CORE]:
            cost = facts[addition.tool].tokens
            if cost <= budget:
                added.append(addition)
                budget -= cost
    return added


def _asked(facts: Sequence[ToolFacts], kept: set[int], of: Callable[[ToolFacts], frozenset[str]]) -> dict[str, str]:
    """Words the kept tools ask for (`of` each: its parameters' words, or their names' alone) that their names
    do not, each with a tool asking for it.

    Only words long enough to name a thing (`MIN_INPUT_WORD` letters, not a verb): "zipcode", "latitude".
    """
    found: dict[str, str] = {}
    for i in sorted(kept):
        for word in of(facts[i]) - facts[i].name_words - _VERBS:
            if len(word) >= MIN_INPUT_WORD:
                found.setdefault(word, facts[i].name)
    return found
