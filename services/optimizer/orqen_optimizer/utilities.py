"""The utility tools an ask needs without naming them: the clock, the calculator and the browser.

An agent asked for train tickets "next Wednesday" calls the list's current-time tool to know
which day that is; asked what 9.5 g of gold is worth, or for someone's BMI, it calls the
calculator. The ask names the day or the number it wants, never the tool, and shares no word
with the tool's text, so neither BM25 nor similarity ranks it anywhere near the cut.

A tool list's clocks are the tools whose names say they give the current time or date
(`get_current_time`, `get-current-date`); its calculators, the tools that take an expression and
whose names say they calculate. A clock is added when the ask dates something relative to today
("today", "tomorrow", a weekday), a calculator when it asks for a number worked out ("calculate",
"estimate", "average", "BMI"), at most `MOST_PER_KIND` of each, best-ranked first; the trace says
which word called for it.

Asked for the prices of a product "at amazon", or for "links to buy", an agent opens the shop in
the list's browser: it navigates, reads the page, clicks and fills the search box, and takes a
screenshot of what it found. A browser is a tool that takes a `url` and whose name says it
navigates (`playwright_navigate`, `puppeteer_navigate`); its kit is that tool and, of its family,
the plainest tool of each other role (the one of fewest name words: `playwright_click`, not
`playwright_iframe_click`). When the ask names the web (a website, a link, a URL) or an online
shop, one kit comes: the fullest (a browser that cannot read its page answers nothing), the
best-ranked of those. The words were chosen on LiveMCPBench's training tasks (docs/routing.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from orqen_optimizer.families import Family
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
# The web, and the online shops an agent reads through a browser (there is no tool of their own in a list).
_WEB = frozenset(
    [
        "website",
        "websites",
        "webpage",
        "webpages",
        "url",
        "urls",
        "link",
        "links",
        "hyperlink",
        "hyperlinks",
        "browse",
        "browser",
        "http",
        "https",
        "www",
        "amazon",
        "ebay",
        "walmart",
        "aliexpress",
        "taobao",
        "etsy",
    ]
)
_CLOCK_NAMES = frozenset(["time", "date", "datetime", "clock"])
_CALCULATOR_NAMES = frozenset(["calculate", "calculator", "calc", "compute", "evaluate", "math"])
_EXPRESSION = frozenset(["expression", "formula"])
_NAVIGATES = frozenset(["navigate", "goto", "visit", "browse"])
# A browser's roles past navigating, each by the words one of its name must have (any of them).
_PAGE_ROLES = (
    frozenset(["html", "snapshot", "content"]),  # reads the page
    frozenset(["click"]),
    frozenset(["fill", "type"]),
    frozenset(["screenshot"]),
)


@dataclass(frozen=True, slots=True)
class Utilities:
    """Indexes of a tool list's clocks and calculators, in list order, and its browsers' kits."""

    clocks: tuple[int, ...]
    calculators: tuple[int, ...]
    browsers: tuple[tuple[int, ...], ...] = ()  # per browser: its navigator, then its page tools


def utilities(facts: Sequence[ToolFacts], found: Sequence[Family] = ()) -> Utilities:
    """The list's utility tools, `found` its families (worked out once per distinct list: orqen_optimizer.toolset)."""
    clocks = [i for i, f in enumerate(facts) if "current" in f.name_words and f.name_words & _CLOCK_NAMES]
    calculators = [i for i, f in enumerate(facts) if f.takes & _EXPRESSION and f.name_words & _CALCULATOR_NAMES]
    family_of = {i: family.members for family in found for i in family.members}
    browsers = []
    for i, f in enumerate(facts):
        if "url" in f.takes and f.name_words & _NAVIGATES:
            members = family_of.get(i, ())
            kit = [
                min(tools, key=lambda m: len(facts[m].name_words))
                for role in _PAGE_ROLES
                if (tools := [m for m in members if facts[m].name_words & role])
            ]
            browsers.append((i, *dict.fromkeys(kit)))
    return Utilities(tuple(clocks), tuple(calculators), tuple(browsers))


def utility_additions(asked: Iterable[str], found: Utilities, order: np.ndarray, taken: set[int]) -> dict[int, str]:
    """The utility tools the ask's words (`asked`) call for that `taken` lacks, best-ranked first, with why."""
    if not (found.clocks or found.calculators or found.browsers):
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
    added.update(_browsing(said, found.browsers, ranked, taken | set(added)))
    return added


def _browsing(
    said: set[str], browsers: Sequence[tuple[int, ...]], ranked: list[int], taken: set[int]
) -> dict[int, str]:
    """A browser's kit when the ask names the web or an online shop."""
    word = min(said & _WEB, default=None)
    if word is None or not browsers:
        return {}
    kit = min(browsers, key=lambda b: (-len(b), ranked.index(b[0])))  # the fullest kit, then the best-ranked
    return {i: f"browses the web the ask names ('{word}')" for i in kit if i not in taken}
