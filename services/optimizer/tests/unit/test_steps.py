"""The steps of an ask (orqen_optimizer.steps)."""

from __future__ import annotations

import pytest

from orqen_optimizer import steps as steps_module
from orqen_optimizer.steps import MAX_STEPS, split_steps


def texts(ask: str) -> list[str]:
    return [step.text for step in split_steps(ask)]


def test_a_single_action_is_one_step() -> None:
    assert texts("What is the weather in Paris?") == ["What is the weather in Paris?"]
    assert texts("") == []


def test_clauses_sentences_and_sequencing_words_are_steps() -> None:
    ask = (
        "Generate a well-formatted PDF report in /root/pdf, summarizing current WeChat Reading trends "
        "and including a word cloud. Then email it to Ann."
    )
    assert texts(ask) == [
        "Generate a well-formatted PDF report in /root/pdf",
        "summarizing current WeChat Reading trends",
        "including a word cloud.",
        "email it to Ann.",
    ]


def test_enumerations_and_numbered_lists_are_split_into_items() -> None:
    assert texts("The analysis should include beat tracking, MFCC extraction, and chroma features.") == [
        "The analysis should include beat tracking",
        "MFCC extraction",
        "chroma features.",
    ]
    assert texts("1. list the files\n2. delete the logs\n3. show disk usage") == [
        "list the files",
        "delete the logs",
        "show disk usage",
    ]


def test_fragments_too_short_to_name_an_action_join_their_neighbour() -> None:
    assert texts("Find flights to Rome and then book the hotel, please") == [
        "Find flights to Rome",
        "book the hotel please",
    ]
    assert texts("Find flights to Rome and then book it") == ["Find flights to Rome book it"]
    assert texts("Okay, and then convert the total to euros") == ["Okay convert the total to euros"]


def test_steps_know_where_they_start() -> None:
    ask = "Move the report to temp. Make sure to create the directory"
    assert [(s.text, ask[s.start : s.start + len(s.text)]) for s in split_steps(ask)] == [
        ("Move the report to temp.", "Move the report to temp."),
        ("Make sure to create the directory", "Make sure to create the directory"),
    ]


def test_a_long_ask_keeps_its_last_actions_within_the_step_limit() -> None:
    cities = ["Oslo", "Rome", "Lima", "Kyiv", "Oran", "Pune", "Riga", "Bern", "Doha", "Baku", "Lyon", "Nice", "Cork"]
    actions = [f"Look up the opening hours of the museums in {city}." for city in cities[: MAX_STEPS + 1]]
    ask = " ".join(["Book a table for two, near the river, after eight.", *actions, "Finally send the plan to Ann."])
    steps = texts(ask)
    assert len(steps) == MAX_STEPS
    # Nothing is dropped: the last action is still in a step, and every word is in one.
    assert steps[-1].endswith("send the plan to Ann.")
    assert sorted(" ".join(steps).split()) == sorted(" ".join(texts_unlimited(ask)).split())
    # The clauses of one sentence were joined before two sentences were.
    assert steps[0].startswith("Book a table for two near the river after eight.")


def texts_unlimited(ask: str) -> list[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps_module, "MAX_STEPS", 100)
        return texts(ask)
