"""The utility tools an ask needs without naming them: the clock and the calculator.

An agent asked for train tickets "next Wednesday" calls the list's current-time tool to know
which day that is; asked what 9.5 g of gold is worth, or for someone's BMI, it calls the
calculator. The ask names the day or the number it wants, never the tool, and shares no word
with the tool's text, so neither BM25 nor similarity ranks it anywhere near the cut.

A tool list's clocks are the tools whose names say they give the current time or date
(`get_current_time`, `get-current-date`); its calculators, the tools that take an expression and
whose names say they calculate. A clock is added when the ask dates something relative to today
("today", "tomorrow", a weekday), a calculator when it asks for a number worked out ("calculate",
"estimate", "average", "BMI"), at most `MOST_PER_KIND` of each, best-ranked first; the trace says
which word called for it. The words were chosen on LiveMCPBench's training tasks (docs/routing.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from orqen_optimizer.tools import ToolFacts

MOST_PER_KIND = 2

_RELATIVE_DAYS = frozenset(
    [
        "today",
        "tonight",
        "tomorrow",
        "yesterday",
        "weekend",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)
_WORKED_OUT = frozenset(
    [
        "calculate",
        "calculating",
        "calculation",
        "compute",
        "computing",
        "estimate",
        "estimated",
        "average",
        "percentage",
        "ratio",
        "bmi",
    ]
)
_CLOCK_NAMES = frozenset(["time", "date", "datetime", "clock"])
_CALCULATOR_NAMES = frozenset(["calculate", "calculator", "calc", "compute", "evaluate", "math"])
_EXPRESSION = frozenset(["expression", "formula"])


@dataclass(frozen=True, slots=True)
class Utilities:
    """Indexes of a tool list's clocks and calculators, in list order."""

    clocks: tuple[int, ...]
    calculators: tuple[int, ...]


def utilities(facts: Sequence[ToolFacts]) -> Utilities:
    """The list's utility tools (worked out once per distinct list: orqen_optimizer.toolset)."""
    clocks = [i for i, f in enumerate(facts) if "current" in f.name_words and f.name_words & _CLOCK_NAMES]
    calculators = [i for i, f in enumerate(facts) if f.takes & _EXPRESSION and f.name_words & _CALCULATOR_NAMES]
    return Utilities(tuple(clocks), tuple(calculators))


def utility_additions(asked: Iterable[str], found: Utilities, order: np.ndarray, taken: set[int]) -> dict[int, str]:
    """The utility tools the ask's words (`asked`) call for that `taken` lacks, best-ranked first, with why."""
    if not found.clocks and not found.calculators:
        return {}
    said, ranked = set(asked), order.tolist()
    added: dict[int, str] = {}
    for tools, triggers, gives in (
        (found.clocks, _RELATIVE_DAYS, "tells the date"),
        (found.calculators, _WORKED_OUT, "works the numbers out"),
    ):
        word = min(said & triggers, default=None)
        if word is None or not tools:
            continue
        fresh = sorted((i for i in tools if i not in taken), key=ranked.index)
        added.update((i, f"{gives} the ask needs ('{word}')") for i in fresh[:MOST_PER_KIND])
    return added
