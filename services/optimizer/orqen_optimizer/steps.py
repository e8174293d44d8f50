"""The steps of an ask: its sentences, list items, sequenced clauses and enumerated items.

An agent's ask often chains several actions ("find what is trending, chart it, then write a
report with the chart"): a single intent vector lands between them and ranks the tools of one
step. The router retrieves for each step too (orqen_optimizer.tool_router). A step is cut at
sentence ends, line breaks and list markers, at sequencing words ("then", "after that",
"finally", "and also"...), and at the commas and "and"s of a clause, then fragments too short
to name an action on their own (fewer than `MIN_WORDS` content words) are joined to the step
before them. No tagger is needed, so it costs microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orqen_optimizer.keywords import words

MAX_STEPS = 12
MIN_WORDS = 2
# A step names an action: a fragment with fewer content words than MIN_WORDS joins its neighbour.
_GLUE = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "by",
        "from",
        "and",
        "or",
        "then",
        "also",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "them",
        "me",
        "my",
        "i",
        "you",
        "your",
        "we",
        "our",
        "please",
        "can",
        "could",
        "would",
        "should",
        "will",
        "be",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "make",
        "sure",
        "as",
        "well",
        "so",
        "after",
        "before",
        "once",
        "finally",
        "next",
        "first",
        "second",
        "third",
        "lastly",
    ]
)
_SENTENCES = re.compile(r"(?:^|\s+)(?:\d+[.)]|[-*\u2022])\s+|(?<=[.!?;])\s+|\n+")
_SEQUENCE = re.compile(
    r",?\s*\b(?:and then|then|after that|afterwards|after which|followed by|finally|lastly|next|"
    r"once (?:that is|it is|done)|and also|as well as|and finally|before that)\b[,:]?\s*",
    re.IGNORECASE,
)
_LISTED = re.compile(r"\s*(?:,\s*(?:and|or)\s+|,\s*|\s+and\s+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Step:
    """One action of an ask, and where it starts in the text (characters)."""

    text: str
    start: int


def split_steps(text: str) -> list[Step]:
    """The steps of `text` in order; a text with one action is one step (empty text: none).

    At most MAX_STEPS: beyond them, neighbouring steps are joined (see `_fitted`), so the
    last actions of a long ask still have a step of their own or share one.
    """
    pieces: list[tuple[Step, int]] = []  # each with the number of its sentence
    for number, (sentence, at) in enumerate(_parts(_SENTENCES, text, 0)):
        for clause, clause_at in _parts(_SEQUENCE, sentence, at):
            pieces += [(Step(item, item_at), number) for item, item_at in _parts(_LISTED, clause, clause_at)]
    steps: list[tuple[Step, int]] = []
    for piece, number in pieces:
        if steps and (_content(piece.text) < MIN_WORDS or _content(steps[-1][0].text) < MIN_WORDS):
            steps[-1] = (_joined(steps[-1][0], piece), steps[-1][1])
        else:
            steps.append((piece, number))
    return _fitted(steps)


def _fitted(steps: list[tuple[Step, int]]) -> list[Step]:
    """`steps` joined down to MAX_STEPS: each time, the two neighbours with the fewest content words.

    Joining within a sentence comes before joining across one: a sentence is likelier one action
    than two sentences are. (Cutting the list short would lose the ask's last actions, which in a
    long ask are as often needed as its first: "first..., second..., lastly...".)
    """
    while len(steps) > MAX_STEPS:
        pair = min(
            range(len(steps) - 1),
            key=lambda i: (
                steps[i][1] != steps[i + 1][1],
                _content(steps[i][0].text) + _content(steps[i + 1][0].text),
            ),
        )
        steps[pair : pair + 2] = [(_joined(steps[pair][0], steps[pair + 1][0]), steps[pair][1])]
    return [step for step, _ in steps]


def _joined(first: Step, second: Step) -> Step:
    return Step(f"{first.text} {second.text}", first.start)


def _parts(pattern: re.Pattern[str], text: str, offset: int) -> list[tuple[str, int]]:
    """The non-empty stripped pieces of `text` between the pattern's matches, with their offsets."""
    found, start = [], 0
    for match in [*pattern.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        if piece.strip():
            found.append((piece.strip(), offset + start + len(piece) - len(piece.lstrip())))
        start = match.end() if match else end
    return found


def _content(text: str) -> int:
    return sum(w not in _GLUE for w in words(text))
