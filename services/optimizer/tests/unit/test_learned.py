"""Which tools learned usage adds beyond the router's K, and why."""

from types import SimpleNamespace
from typing import cast

import pytest
from redis import Redis

from orqen_common.tool_learning import ASKED, CO_USED, FOLLOWS, weight
from orqen_optimizer.learned import MIN_PROBABILITY, PAUSE_SECONDS, Anchors, LearnedUsage, chosen, likely_tools
from orqen_optimizer.plan import room_for
from orqen_optimizer.tool_router import TOKEN_CAP_MIN_TOOLS, Decision
from orqen_optimizer.tools import ToolFacts

NOW = 1_790_000_000.0
W = weight(NOW)


def stat(relation: str, anchor: str, total: float, **counts: float) -> tuple[str, str, dict[bytes, bytes]]:
    """A statistic as Redis returns it, with counts of events that happened NOW."""
    fields = {b"": repr(total * W).encode()} | {k.encode(): repr(v * W).encode() for k, v in counts.items()}
    return relation, anchor, fields


def test_the_best_evidence_per_tool_wins_and_co_use_counts_for_less() -> None:
    likely = likely_tools(
        [
            stat(FOLLOWS, "read_file", 4, write_file=2, delete_file=1),
            stat(CO_USED, "read_file", 4, write_file=4, list_dir=2),
            stat(ASKED, "search", 10, delete_file=6),
        ],
        NOW,
    )
    assert likely == {
        "write_file": (0.5, "follows read_file (0.50)"),  # co-use 4/4 * 0.5 ties, not beats
        "delete_file": (0.6, "asked like search (0.60)"),
        "list_dir": (0.25, "co-used with read_file (0.50)"),
    }


def test_an_anchor_seen_less_than_twice_teaches_nothing_and_old_counts_fade() -> None:
    assert likely_tools([stat(FOLLOWS, "read_file", 1.5, write_file=1.5)], NOW) == {}
    # Seen 3 times two half-lives ago: 0.75 now, below the support needed.
    fields = {b"": repr(3 * weight(NOW - 14 * 86_400)).encode(), b"write_file": b"1"}
    assert likely_tools([(FOLLOWS, "read_file", fields)], NOW) == {}


def test_chosen_adds_offered_tools_not_kept_most_likely_first_within_room() -> None:
    likely = {
        "a": (0.9, "follows x (0.90)"),
        "b": (0.5, "follows x (0.50)"),
        "kept": (0.9, "follows x (0.90)"),
        "absent": (0.9, "follows x (0.90)"),
        "weak": (MIN_PROBABILITY - 0.01, "follows x (0.29)"),
    }
    offered = ["a", "b", "kept", "weak", "z"]
    added = chosen(likely, offered, kept=["kept"], below_cut=["z"], room=5)
    assert [(t.name, t.score) for t in added] == [("a", 0.9), ("b", 0.5)]
    assert [t.name for t in chosen(likely, offered, kept=["kept"], below_cut=[], room=1)] == ["a"]


def test_a_tool_ranked_just_below_the_cut_needs_half_the_evidence() -> None:
    likely = {"weak": (MIN_PROBABILITY / 2, "co-used with x (0.30)")}
    assert [t.name for t in chosen(likely, ["weak"], kept=[], below_cut=["weak"], room=3)] == ["weak"]
    far = ["t1", "t2", "t3", "t4", "t5", "weak"]
    assert chosen(likely, ["weak"], kept=[], below_cut=far, room=3) == []


def test_anchors_are_the_last_call_the_calls_and_kept_tools_and_the_top_candidate() -> None:
    chat = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "ls"}}, {"function": {"name": "cd"}}]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "ls"}}]},
        ]
    }
    anchors = Anchors.of(chat, kept=["grep", "ls"], top="grep")
    assert anchors == Anchors(last_called="ls", co_used=["ls", "cd", "grep"], top="grep")
    assert anchors.keys() == [(FOLLOWS, "ls"), (CO_USED, "ls"), (CO_USED, "cd"), (CO_USED, "grep"), (ASKED, "grep")]


def test_a_redis_that_fails_costs_only_the_learned_part_and_is_left_alone_for_a_while() -> None:
    now = [NOW]
    usage = LearnedUsage(Redis(port=1, socket_connect_timeout=0.2), clock=lambda: now[0])
    chat = {"messages": [{"role": "user", "content": "go"}]}
    assert usage.additions("acct", chat, ["a", "b"], ["a", "b"], ["a"], k_cap=0) == []
    assert usage._paused_until == pytest.approx(NOW + PAUSE_SECONDS)


def test_no_room_no_read() -> None:
    usage = LearnedUsage(Redis(port=1), max_added=3)
    # A K cap already reached: nothing to add, and Redis is not asked (it would fail here).
    assert usage.additions("acct", {"messages": []}, ["a", "b"], ["a", "b"], ["a"], k_cap=1) == []
    assert usage._paused_until == 0.0


def _facts(count: int, tokens: int = 10) -> list[ToolFacts]:
    return cast(list[ToolFacts], [SimpleNamespace(name=f"t{i}", tokens=tokens) for i in range(count)])


def _decision(ranked: int, because: dict[int, str] | None = None) -> Decision:
    keep = [*range(ranked), *(because or {})]
    return Decision(keep, "semantic", "", "", [], because or {})


def test_learned_tools_take_the_place_of_the_lowest_ranked_tools_of_as_many_tokens() -> None:
    facts = _facts(30)
    decision = _decision(15, {20: "step 1"})
    assert room_for([25, 26], decision, facts, called=set()) == [14, 13]  # not the step's tool
    # A tool the conversation called stays, whatever its rank.
    assert room_for([25, 26], decision, facts, called={"t14"}) == [13, 12]
    # A heavy learned tool displaces as many tokens as it brings.
    heavy = [*facts[:25], cast(ToolFacts, SimpleNamespace(name="heavy", tokens=25))]
    assert room_for([25], decision, heavy, called=set()) == [14, 13, 12]


def test_at_the_rankings_minimum_learned_tools_are_added() -> None:
    facts = _facts(30)
    assert room_for([20, 21], _decision(TOKEN_CAP_MIN_TOOLS), facts, called=set()) == []
    assert room_for([20, 21, 22], _decision(TOKEN_CAP_MIN_TOOLS + 1), facts, called=set()) == [TOKEN_CAP_MIN_TOOLS]
