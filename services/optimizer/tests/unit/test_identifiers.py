"""Lexical bridges between tool identifiers and asks (orqen_optimizer.identifiers)."""

from __future__ import annotations

import pytest

from orqen_optimizer.identifiers import aliases, bridged_names, identifier_words, path_words
from orqen_optimizer.keywords import words
from orqen_optimizer.tools import tool_facts

from .conftest import tool


def test_identifiers_split_at_every_convention() -> None:
    assert identifier_words("getHTTPServer_v2-list") == ["get", "http", "server", "v", "2", "list"]
    assert identifier_words("displayCarStatus") == ["display", "car", "status"]
    assert identifier_words("get-weread-rank") == ["get", "weread", "rank"]
    assert identifier_words("trends-hub__get-weibo-trending") == ["trends", "hub", "get", "weibo", "trending"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("du", "Estimate the disk usage of a file or directory.", ["disk", "usage"]),  # acronym
        ("cd", "Change the current working directory to the specified folder.", ["current", "directory"]),
        ("mv", "Move a file or directory from one location to another.", ["move"]),  # contraction
        ("ls", "List the contents of the current directory.", ["list"]),
        ("mkdir", "Create a new directory. Make it in the current directory.", ["make", "directory"]),  # run together
        ("get_stock_info", "Get the details of a stock.", []),  # every name word is in the text: nothing to add
    ],
)
def test_short_name_words_stand_for_words_of_the_tools_own_text(name: str, text: str, expected: list[str]) -> None:
    assert aliases(name, words(text)) == expected


def test_aliases_are_indexed_in_the_tools_views_and_name_words() -> None:
    facts = tool_facts(tool("rmdir", "Remove a directory; it must be empty."))
    assert facts.views[0].startswith("rmdir remove directory")
    assert {"remove", "directory"} <= facts.name_words


def test_a_run_together_short_form_in_a_name_is_bridged_from_the_ask() -> None:
    names = ["get", "weread", "rank", "bbc", "news"]
    assert bridged_names("Summarise current WeChat Reading trends", names) == ["weread"]
    assert bridged_names("What does the British Broadcasting Corporation report?", names) == ["bbc"]
    assert bridged_names("What is trending on the news?", names) == []


@pytest.mark.parametrize(
    ("ask", "expected"),
    [
        ("Generate a deep report of bitcoin and save it in /root/markdown/bitcoin.md", ["file", "write"]),
        ("Write the summary to notes.txt", ["file", "write"]),
        ("Fetch today's news, then generate a report at /root/markdown/daily_fin.md.", ["file", "write"]),
        ("Make a web page about the history of AI based on Wikipedia at /root/html/ai.html.", ["file", "write"]),
        ("Create a comparison report in /root/markdown/compare.md", ["file", "write"]),
        ("Read the data under /root/excel/people_data.xlsx and tell me Sophia Moore's bmi.", ["file"]),
        ("Open ~/papers/webarena and compare the two", ["file"]),
        ("Redirect unauthenticated users to /login and store the session", []),  # a route, not a file
        ("I have 9.5g gold; what is it worth at amazon.com?", []),
        ("Write a poem about the sea", []),
    ],
)
def test_an_ask_naming_a_file_carries_the_words_file_tools_are_named_by(ask: str, expected: list[str]) -> None:
    assert path_words(ask) == expected
