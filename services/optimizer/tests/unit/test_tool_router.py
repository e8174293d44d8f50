"""Tool routing: intent, must-keep tools, BM25, adaptive K, and a real routing decision."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.keywords import bm25, words
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.tool_router import (
    ToolRouter,
    adaptive_k,
    intent_of,
    is_follow_up,
    keyword_leads,
    must_keep,
)
from orqen_optimizer.tools import tool_views

from .conftest import TOOLS, tool


def test_words_split_names_and_camel_case() -> None:
    assert words("getStockPrice of AAPL_2024") == ["get", "stock", "price", "of", "aapl", "2024"]


def test_the_intent_is_the_latest_user_message_and_what_followed_it() -> None:
    messages = [
        {"role": "user", "content": "old question"},
        {"role": "user", "content": "Book me a flight to Paris"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "search_flights", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "AF123 at 9:00"},
    ]  # fmt: skip
    intent = intent_of(messages)
    assert intent.startswith("Book me a flight to Paris") and "search_flights" in intent and "AF123" in intent
    assert "old question" not in intent


def test_tools_named_called_or_answered_are_always_kept() -> None:
    chat = {
        "tool_choice": {"type": "function", "function": {"name": "send_email"}},
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "sunny"},
        ],
    }  # fmt: skip
    assert must_keep(chat) == {"send_email", "get_weather"}


def test_bm25_prefers_the_document_with_the_rare_term() -> None:
    scores = bm25(["stock", "price"], ["latest price of a stock", "price of a hotel room", "weather"])
    assert scores[0] > scores[1] > scores[2] == 0.0


@pytest.mark.parametrize(
    ("fused", "floor", "cap", "kept", "reason"),
    [
        ([0.9, 0.7, 0.5, 0.1], 1, 0, [0, 1], "within 0.25 of the best score 0.90"),
        ([0.9, 0.5, 0.4, 0.1], 3, 0, [0, 1, 2], "floor 3"),
        ([0.9, 0.89, 0.88, 0.87], 1, 2, [0, 1], "cap 2"),
    ],
)
def test_adaptive_k(fused: list[float], floor: int, cap: int, kept: list[int], reason: str) -> None:
    assert adaptive_k(fused, floor, cap) == (kept, reason)


def test_examples_are_extra_views_of_a_tool(tools: list[dict[str, Any]]) -> None:
    with_examples = {**tools[0], "function": {**tools[0]["function"], "x-orqen-examples": ["is it raining in Oslo"]}}
    assert tool_views(with_examples)[1:] == ["is it raining in Oslo"]


def test_a_real_decision_keeps_the_right_tool_and_whatever_the_conversation_needs(tools: list[dict[str, Any]]) -> None:
    router = ToolRouter(ToolIndex())
    chat = {
        "messages": [{"role": "user", "content": "What is Apple's stock trading at right now?"}],
        "tool_choice": {"type": "function", "function": {"name": "set_reminder"}},
    }
    decision = router.route(chat, tools, RoutingPolicy(mode="semantic", k_floor=1))
    names = [tools[i]["function"]["name"] for i in decision.keep]
    assert names[0] == "get_stock_price" and decision.ranked[0][0] == "get_stock_price"
    assert "set_reminder" in names and len(names) < len(tools)
    assert decision.mode == "semantic" and decision.k_reason.startswith("reranked: ")
    assert all(0.0 <= score <= 1.0 for _, score in decision.ranked)


def test_the_keyword_fast_path_needs_a_clear_lead() -> None:
    assert keyword_leads(np.array([0.0, 6.0, 1.5, 2.0]))
    assert not keyword_leads(np.array([0.0, 6.0, 2.5, 2.0]))
    assert not keyword_leads(np.zeros(4)) and not keyword_leads(np.array([3.0]))


def test_a_bare_follow_up_is_recognised_only_after_an_earlier_ask() -> None:
    earlier = {"role": "user", "content": "Book me a flight to Paris"}
    assert is_follow_up([earlier, {"role": "assistant", "content": "Which day?"}, {"role": "user", "content": "ok"}])
    assert is_follow_up([earlier, {"role": "user", "content": "Yes, please go ahead!"}])
    assert not is_follow_up([earlier, {"role": "user", "content": "Now find a hotel in Rome"}])
    assert not is_follow_up([{"role": "user", "content": "yes"}])


def test_auto_routes_on_keywords_alone_when_one_tool_clearly_matches(tools: list[dict[str, Any]]) -> None:
    index = ToolIndex()
    chat = {"messages": [{"role": "user", "content": "translate this text into German"}]}
    decision = ToolRouter(index).route(chat, tools)
    names = [tools[i]["function"]["name"] for i in decision.keep]
    assert decision.mode == "keyword" and names[0] == "translate_text" and len(index) == 0  # no tool embedded


def test_a_follow_up_is_routed_on_the_earlier_ask(tools: list[dict[str, Any]]) -> None:
    chat = {"messages": [
        {"role": "user", "content": "What's the weather going to be in Oslo?"},
        {"role": "assistant", "content": "Do you want me to look it up?"},
        {"role": "user", "content": "yes please"},
    ]}  # fmt: skip
    decision = ToolRouter(ToolIndex()).route(chat, tools)
    assert decision.mode == "intent_guided" and decision.intent.startswith("What's the weather")
    assert tools[decision.keep[0]]["function"]["name"] == "get_weather"


def test_when_nothing_matches_the_margin_widens(tools: list[dict[str, Any]]) -> None:
    decision = ToolRouter(ToolIndex()).route({"messages": [{"role": "user", "content": "hmm"}]}, tools)
    assert decision.mode == "heuristic" and decision.k_reason.startswith("within 0.5")


def test_the_decision_shows_the_best_20_and_every_kept_tool(tools: list[dict[str, Any]]) -> None:
    filler = [
        {"type": "function", "function": {"name": f"noop_{i}", "description": f"Does nothing, variant {i}."}}
        for i in range(25)
    ]
    chat = {
        "messages": [{"role": "user", "content": "What is Apple's stock trading at right now?"}],
        "tool_choice": {"type": "function", "function": {"name": "noop_24"}},
    }
    many = tools + filler
    decision = ToolRouter(ToolIndex()).route(chat, many, RoutingPolicy(mode="semantic"))
    shown = [name for name, _ in decision.ranked]
    assert len(shown) >= 20 and len(shown) < len(many) and "noop_24" in shown
    assert {many[i]["function"]["name"] for i in decision.keep} <= set(shown)


def test_each_step_of_a_multi_step_ask_is_retrieved_and_traced(tools: list[dict[str, Any]]) -> None:
    router = ToolRouter(ToolIndex())
    ask = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese and email it to Ana."
    decision = router.route({"messages": [{"role": "user", "content": ask}]}, tools, RoutingPolicy(k_floor=1))
    names = {tools[i]["function"]["name"] for i in decision.keep}
    assert {"search_hotels", "translate_text", "send_email"} <= names
    assert [step.text for step in decision.steps] == [
        "Find a hotel in Lisbon for Friday",
        "translate the booking text into Portuguese",
        "email it to Ana.",
    ]
    assert tools[decision.steps[1].keep[0]]["function"]["name"] == "translate_text"
    assert all(reason.startswith(("step ", "ranks ")) for reason in decision.added_because.values())
    assert decision.bridged == []  # no bridge word: every keyword is the ask's own


def test_a_prerequisite_of_the_family_in_play_is_kept_and_says_why() -> None:
    fs = "This tool belongs to the file system."
    names = ["cd", "grep", "find", "du", "ls", "mkdir", "rm", "tail"]
    files = [tool(n, f"{fs} {d}") for n, d in zip(names, [
        "Change the current working directory.", "Search a file for lines matching a pattern.",
        "Find files by name.", "Disk usage of a directory.", "List the directory.", "Make a directory.",
        "Remove a file.", "Show the last lines of a file."], strict=True)]  # fmt: skip
    tools = files + TOOLS
    chat = {"messages": [{"role": "user", "content": "Search the file report.txt with grep for 'budget analysis'"}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(k_floor=1, k_cap=0))
    kept = [tools[i]["function"]["name"] for i in decision.keep]
    assert kept[0] == "grep" and kept[-1] == "cd"  # ranked too low on its own: added for its family
    reasons = {tools[i]["function"]["name"]: why for i, why in decision.added_because.items()}
    assert reasons == {
        "cd": "family description 'This tool belongs to the file system.' is in play (its grep ranks first): "
        "a navigation or state tool"
    }
    # The trace's first K are the forwarded tools, the one the family added included, in the order kept:
    # the dashboard and the recall calibration read what was forwarded from them.
    assert [name for name, _ in decision.ranked[: len(kept)]] == kept
    by_score = [name for name, _ in sorted(decision.ranked, key=lambda c: -c[1])]
    assert "cd" not in by_score[: len(kept)]  # by its score alone it would not be among them
    assert decision.bridged == ["file"]  # report.txt names a file


def test_keyword_routing_retrieves_each_step_by_bm25_without_embedding(
    tools: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(texts: list[str]) -> np.ndarray:
        raise AssertionError("the keyword mode embeds nothing")

    monkeypatch.setattr("orqen_optimizer.tool_router.embed", never)
    ask = "Send an email to Ann, check the weather in Oslo, then set a reminder for noon"
    chat = {"messages": [{"role": "user", "content": ask}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(mode="keyword", k_floor=1))
    assert decision.mode == "keyword"
    steps = [(step.text, [tools[i]["function"]["name"] for i in step.keep]) for step in decision.steps]
    assert steps == [
        ("Send an email to Ann", ["send_email"]),
        ("check the weather in Oslo", ["get_weather"]),
        ("set a reminder for noon", ["set_reminder"]),
    ]
    assert {"send_email", "get_weather", "set_reminder"} <= {tools[i]["function"]["name"] for i in decision.keep}


def test_a_keyword_step_picks_no_tool_by_its_stop_words(tools: list[dict[str, Any]]) -> None:
    # "what" and "at" are in set_reminder's text ("Remind the user at a time", `text`: "What"), and are all
    # the second step shares with any tool: by them alone it took the reminder, a slot for nothing.
    chat = {"messages": [{"role": "user", "content": "Get the AAPL stock price, then tell me what it trades at"}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(mode="keyword", k_floor=1))
    steps = [(step.text, [tools[i]["function"]["name"] for i in step.keep]) for step in decision.steps]
    assert steps == [("Get the AAPL stock price", ["get_stock_price"]), ("tell me what it trades at", [])]
    assert "set_reminder" not in {tools[i]["function"]["name"] for i in decision.keep}


def test_a_multi_step_ask_runs_the_model_once(tools: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from orqen_optimizer import tool_router

    runs: list[tuple[str, list[str]]] = []

    def counting(texts: list[str]) -> np.ndarray:
        runs.append(("texts", list(texts)))
        return np.asarray(embed(texts))

    def counting_spans(text: str, spans: list[tuple[int, int]]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        runs.append(("spans", [text[start:end] for start, end in spans]))
        return with_spans(text, spans)

    embed, with_spans = tool_router.embed, tool_router.embed_with_spans
    monkeypatch.setattr(tool_router, "embed", counting)
    monkeypatch.setattr(tool_router, "embed_with_spans", counting_spans)
    ask = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese"
    later = [{"role": "user", "content": ask}, {"role": "assistant", "content": "Found Hotel Sol."}]
    decision = ToolRouter(ToolIndex()).route({"messages": later}, tools, RoutingPolicy(mode="semantic"))
    # The intent holds what the agent did since the ask; the steps are read from its one run.
    assert decision.intent == f"{ask} Found Hotel Sol."
    steps = ["Find a hotel in Lisbon for Friday, then ", "translate the booking text into Portuguese"]
    assert runs[-1:] == [("spans", steps)]
    assert all(kind == "texts" and texts != [decision.intent] for kind, texts in runs[:-1])  # the tools' views
    assert len(decision.steps) == 2
    assert tools[decision.steps[1].keep[0]]["function"]["name"] == "translate_text"


def test_the_accounts_cap_bounds_the_tools_steps_and_families_add(tools: list[dict[str, Any]]) -> None:
    ask = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese and email it to Ana."
    chat = {"messages": [{"role": "user", "content": ask}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(k_floor=1, k_cap=2))
    assert len(decision.keep) == 2 and decision.mode == "limit" and decision.k_reason == "cap 2"
    assert len(decision.steps) == 3  # still traced


def test_the_heads_of_similarity_and_keywords_are_kept_whatever_the_fusion_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orqen_optimizer import tool_router

    monkeypatch.setattr(tool_router, "HEAD", 2)
    monkeypatch.setattr(tool_router, "HEAD_SHARE", 1.0)
    dense = np.array([0.9, 0.1, 0.8, 0.2, 0.0])
    keyword = np.array([0.0, 5.0, 0.0, 0.0, 4.0])
    assert tool_router.heads(keyword, dense, kept={0}) == {
        2: "ranks 2 by similarity alone",
        1: "ranks 1 by keywords alone",
        4: "ranks 2 by keywords alone",
    }
    assert tool_router.heads(keyword, None, kept=set()) == {
        1: "ranks 1 by keywords alone",
        4: "ranks 2 by keywords alone",
    }
    monkeypatch.setattr(tool_router, "HEAD_SHARE", 0.2)  # one of five tools
    assert tool_router.heads(keyword, dense, kept=set()) == {
        0: "ranks 1 by similarity alone",
        1: "ranks 1 by keywords alone",
    }
    assert tool_router.heads(np.zeros(5), np.zeros(5), kept=set()) == {}  # no score, no head


def test_a_familys_tools_near_the_similarity_head_come_with_its_kept_kin(monkeypatch: pytest.MonkeyPatch) -> None:
    from orqen_optimizer import tool_router
    from orqen_optimizer.families import Family

    monkeypatch.setattr(tool_router, "HEAD", 2)
    monkeypatch.setattr(tool_router, "HEAD_SHARE", 1.0)  # the head is 2 tools, kin reach down to rank 4
    trends = Family("server trends", (0, 1, 2, 3, 4, 5))
    maps = Family("server maps", (6, 7, 8))
    # By similarity: 6, 0, 7, 3, 4, 5, 8, 1, 2.
    dense = np.array([0.90, 0.30, 0.20, 0.80, 0.70, 0.60, 0.95, 0.85, 0.10])
    kept = {0, 1, 2, 6}  # three of trends, one of maps
    assert tool_router.kin(dense, [trends, maps], kept) == {
        3: "ranks 4 by similarity, 3 tools of its family server trends kept"
    }
    monkeypatch.setattr(tool_router, "KIN_DEPTH", 3)  # down to rank 6: 4 and 5 too, but two a family
    assert list(tool_router.kin(dense, [trends, maps], kept)) == [3, 4]
    assert tool_router.kin(dense, [trends, maps], {1, 2, 6, 7}) == {}  # two of each family kept: not enough
    assert tool_router.kin(dense, [], kept) == {}  # no families, no kin


@pytest.mark.parametrize(
    "ask", ["Will it rain in Paris tomorrow, do I need an umbrella?", "Is it going to be sunny or stormy in Oslo?"]
)
def test_ranked_by_keywords_a_tool_saying_it_in_other_words_comes_first(
    monkeypatch: pytest.MonkeyPatch, ask: str
) -> None:
    from orqen_optimizer import tool_router

    tools = TOOLS[::-1]  # the weather tool last: the list's order gives it nothing
    chat = {"messages": [{"role": "user", "content": ask}]}
    keyword = RoutingPolicy(mode="keyword", k_floor=1)
    decision = ToolRouter(ToolIndex()).route(chat, tools, keyword)
    assert tools[decision.keep[0]]["function"]["name"] == "get_weather"  # no word in common with the ask
    monkeypatch.setattr(tool_router, "WORD_WEIGHT", 0.0)  # BM25 alone
    assert tools[ToolRouter(ToolIndex()).route(chat, tools, keyword).keep[0]]["function"]["name"] != "get_weather"


def test_ranked_by_keywords_a_new_lists_plan_goes_by_bm25_while_its_word_vectors_are_worked_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orqen_optimizer import word_vectors

    monkeypatch.setattr(word_vectors, "IN_LINE_TEXTS", -1)  # every list counts as new and large
    tools = [tool(f"lookup_{i}", f"Looks up record kind {i} of the archive.") for i in range(12)]
    chat = {"messages": [{"role": "user", "content": "Find record kind 7 in the archive"}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(mode="keyword", k_floor=1))
    assert decision.k_reason.endswith("by BM25 alone while the list's word vectors are worked out")
    assert tools[decision.keep[0]]["function"]["name"] == "lookup_7"


def test_the_rankings_k_is_cut_to_the_token_cap_but_not_below_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    from orqen_optimizer import tool_router
    from orqen_optimizer.tools import tool_facts

    facts = [tool_facts(tool(f"tool_{i}", f"Does thing number {i}.")) for i in range(20)]
    total = sum(f.tokens for f in facts)
    order = np.arange(len(facts))
    monkeypatch.setattr(tool_router, "TOKEN_SHARE_CAP", 0.0)
    assert tool_router.within_tokens(order, 15, "why", facts, total) == (15, "why")
    monkeypatch.setattr(tool_router, "TOKEN_SHARE_CAP", sum(f.tokens for f in facts[:10]) / total)
    monkeypatch.setattr(tool_router, "TOKEN_CAP_MIN_TOOLS", 4)
    k, reason = tool_router.within_tokens(order, 15, "why", facts, total)
    assert k == 10 and reason.startswith("why, cut to 10 within")
    monkeypatch.setattr(tool_router, "TOKEN_SHARE_CAP", 1e-9)  # nothing fits: the minimum is kept
    assert tool_router.within_tokens(order, 15, "why", facts, total)[0] == 4
    assert tool_router.within_tokens(order, 3, "why", facts, total) == (3, "why")


def test_a_step_keeps_a_few_more_candidates_only_where_each_is_a_small_part_of_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orqen_optimizer import tool_router
    from orqen_optimizer.tools import tool_facts

    facts = [tool_facts(tool(f"tool_{i}", f"Does thing number {i}.")) for i in range(10)]
    each = facts[0].tokens
    order = np.arange(10)
    likely = np.array([0.6, 0.2, 0.06, 0.04, 0.02, 0.01, 0.006, 0.004, 0.001, 0.0])
    monkeypatch.setattr(tool_router, "STEP_K", 3)
    monkeypatch.setattr(tool_router, "STEP_KEEP_PROBABILITY", 0.05)
    monkeypatch.setattr(tool_router, "STEP_MORE_PROBABILITY", 0.005)
    monkeypatch.setattr(tool_router, "STEP_TOKEN_SHARE", 0.01)
    # A thousand-tool request: the seven at least 0.005 likely fit in 1% of its tokens.
    assert tool_router.step_k(order, likely, facts, total=1000 * each) == 7
    # Five of them fit in a request of five hundred.
    assert tool_router.step_k(order, likely, facts, total=500 * each) == 5
    # A hundred-tool request: one tool is 1% of it, so the step keeps its three likeliest, as before.
    assert tool_router.step_k(order, likely, facts, total=100 * each) == 3
    monkeypatch.setattr(tool_router, "STEP_TOKEN_SHARE", 0.0)
    assert tool_router.step_k(order, likely, facts, total=1000 * each) == 3
    # However unlikely, a step keeps its best candidate.
    assert tool_router.step_k(order, np.zeros(10), facts, total=1000 * each) == 1


FILE_TOOLS = [
    tool("read_file", "Read the complete contents of a file from the file system.", path="The file's path"),
    tool("write_file", "Create a new file or completely overwrite an existing file with new content.", path="Path",
         content="Text"),
    tool("list_directory", "List the files and directories in a directory.", path="The directory"),
    tool("move_file", "Move or rename a file or directory.", source="From", destination="To"),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["auto", "keyword"])
def test_an_ask_to_save_in_a_path_keeps_the_tool_that_writes_files(mode: str) -> None:
    tools = FILE_TOOLS + TOOLS
    ask = "Look up the Apple stock price, and save it in /root/notes/apple.md"
    chat = {"messages": [{"role": "user", "content": ask}]}
    decision = ToolRouter(ToolIndex()).route(chat, tools, RoutingPolicy(mode=mode, k_floor=1))
    kept = {tools[i]["function"]["name"] for i in decision.keep}
    assert {"get_stock_price", "write_file"} <= kept
    assert decision.bridged == ["file", "write"]  # the trace says which keywords no word of the ask gave
    if mode == "keyword":  # BM25 alone: the step that names the path finds the tool by the words it bridges to
        assert [tools[step.keep[0]]["function"]["name"] for step in decision.steps] == ["get_stock_price", "write_file"]


def test_an_ask_to_make_a_file_keeps_the_best_tool_for_writing_files_whatever_its_other_words_say() -> None:
    # The ask's topic fills the ranking: pages, history, encyclopedia tools. Only its path says a file is made.
    topic = [
        tool(f"{source}_{verb}", f"{text} from {source.title()}.", query="What to look up")
        for source in ("wikipedia", "britannica", "wikidata", "archive", "history", "encyclopedia", "scholar")
        for verb, text in (("search", "Search history articles"), ("page", "Get a web page about history"),
                           ("summary", "Summarise the history of a topic"), ("html", "Fetch the HTML of a page"))
    ]  # fmt: skip
    tools = topic + FILE_TOOLS + TOOLS
    ask = "Make a web page about the history of AI based on Wikipedia at /root/html/ai.html."
    decision = ToolRouter(ToolIndex()).route({"messages": [{"role": "user", "content": ask}]}, tools, RoutingPolicy())
    writer = next(i for i, t in enumerate(tools) if t["function"]["name"] == "write_file")
    assert writer in decision.keep
    assert decision.added_because[writer] == "the ask names a file to make: the best tool for file write"
    assert decision.bridged == ["file", "write"]


def test_a_step_keeps_the_tools_tied_with_its_most_similar_within_a_token_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orqen_optimizer import tool_router
    from orqen_optimizer.tools import tool_facts

    facts = [tool_facts(tool(f"tool_{i}", f"Does thing number {i}.")) for i in range(30)]
    each = facts[0].tokens
    order = np.array([3, 1, 2, 0, *range(4, 30)])  # the step's reranked order
    similar = np.linspace(0.5, 0.2, 30)  # tool 0 most similar, then 1, 2, …
    similar[25] = 0.49  # tied, but past the first TIE_CANDIDATES of the step
    monkeypatch.setattr(tool_router, "TIE_CANDIDATES", 20)
    monkeypatch.setattr(tool_router, "TIE_SIMILARITY", 0.025)
    monkeypatch.setattr(tool_router, "TIE_TOKEN_SHARE", 0.01)
    # Within 0.025 of 0.5: tools 0, 1 and 2 (0.4897 for tool 2), in the step's order.
    assert tool_router.ties(order, similar, facts, total=1000 * each) == [1, 2, 0]
    # A hundred-tool request: one tool is 1% of it, two do not fit.
    assert tool_router.ties(order, similar, facts, total=100 * each) == [1]


def test_steps_wanting_different_things_keep_their_ties_and_one_intent_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orqen_optimizer import tool_router

    weather = [
        tool("weather_get", "Get the weather for a city.", city="City name"),
        tool("api_weather", "Weather API: the weather conditions in a location.", location="Location"),
        tool("get_current_weather", "Retrieves the current weather conditions for a location.", location="City"),
    ]
    fillers = [tool(f"ledger_{i}", f"Looks up ledger record number {i}.", record="Which record") for i in range(40)]
    pool = [tool("square_area", "Calculate the area of a square from its side.", side="Side length"), *weather]
    pool += fillers
    monkeypatch.setattr(tool_router, "STEP_K", 1)  # a step keeps its likeliest tool, and its ties
    monkeypatch.setattr(tool_router, "STEP_TOKEN_SHARE", 0.0)
    monkeypatch.setattr(tool_router, "TIE_SIMILARITY", 0.3)
    monkeypatch.setattr(tool_router, "TIE_TOKEN_SHARE", 0.2)  # a small pool: each tool is 2% of it
    router = ToolRouter(ToolIndex())
    ask = "What's the area of a square with a side of 5 cm, and what is the weather in Queenstown Singapore?"
    decision = router.route({"messages": [{"role": "user", "content": ask}]}, pool, RoutingPolicy(k_floor=1))
    by_step = [{pool[i]["function"]["name"] for i in step.keep} for step in decision.steps]
    assert len(by_step) == 2 and "square_area" in by_step[0]
    assert {"weather_get", "api_weather", "get_current_weather"} <= by_step[1]
    assert {"weather_get", "api_weather", "get_current_weather"} <= {pool[i]["function"]["name"] for i in decision.keep}
    # One thing asked in two steps: their best tool is the same, so each step keeps its likeliest alone.
    ask = "Tell me the weather in Queenstown, and the weather in Singapore."
    decision = router.route({"messages": [{"role": "user", "content": ask}]}, pool, RoutingPolicy(k_floor=1))
    assert len(decision.steps) == 2 and all(len(step.keep) == 1 for step in decision.steps)
