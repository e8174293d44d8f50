"""The clock, the calculator and the browser an ask needs without naming them (orqen_optimizer.utilities)."""

from __future__ import annotations

from typing import Any

import numpy as np

from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.families import families
from orqen_optimizer.keywords import words
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.tool_router import ToolRouter
from orqen_optimizer.tools import tool_facts
from orqen_optimizer.utilities import Utilities, utilities, utility_additions

from .conftest import TOOLS, tool

CLOCK = tool("time__get_current_time", "Get the current time in a timezone.", timezone="IANA timezone name")
DATE = tool("rail__get-current-date", "Today's date in China.")
CALCULATOR = tool("calculator__calculate", "Calculates the result of a math expression.", expression="The expression")
TRAINS = tool("rail__search_tickets", "Search train tickets between two stations on a date.", date="YYYY-MM-DD")
# Neither takes an expression nor tells the current time: a tool of the same words is not a utility.
LOOKALIKES = [
    tool("calculate_bmi", "Body mass index from weight and height.", weight="kg", height="m"),
    tool("time_zone_converter", "Convert a time between time zones.", time="Time", zone="Zone"),
]
POOL = [*TOOLS, TRAINS, *LOOKALIKES, CLOCK, CALCULATOR, DATE]


def names(pool: list[dict[str, Any]], indexes: Any) -> list[str]:
    return [pool[i]["function"]["name"] for i in indexes]


def test_a_list_s_clocks_and_calculators_are_found_by_name_and_parameters() -> None:
    found = utilities([tool_facts(t) for t in POOL])
    assert names(POOL, found.clocks) == ["time__get_current_time", "rail__get-current-date"]
    assert names(POOL, found.calculators) == ["calculator__calculate"]


def test_a_relative_day_brings_the_clocks_and_a_number_to_work_out_the_calculator() -> None:
    found = Utilities(clocks=(3, 7), calculators=(5,))
    order = np.array([7, 1, 2, 3, 4, 5, 6, 0])
    assert utility_additions(words("Train tickets to Shanghai next Wednesday"), found, order, set()) == {
        7: "tells the date the ask needs ('wednesday')",  # the better ranked clock first
        3: "tells the date the ask needs ('wednesday')",
    }
    assert utility_additions(words("Estimate what 9.5g of gold is worth"), found, order, {5}) == {}
    assert utility_additions(words("What is Sophia's BMI?"), found, order, set()) == {
        5: "works the numbers out the ask needs ('bmi')"
    }
    assert utility_additions(words("Find train tickets to Shanghai"), found, order, set()) == {}


def test_the_router_forwards_the_clock_for_a_day_relative_to_today() -> None:
    # Nothing in the ask is a word of the clock's text: ranked alone, it is nowhere near the cut.
    chat = {"messages": [{"role": "user", "content": "Book me train tickets from Beijing to Shanghai next Wednesday"}]}
    decision = ToolRouter(ToolIndex()).route(chat, POOL, RoutingPolicy(mode="keyword", k_floor=1))
    kept = names(POOL, decision.keep)
    assert "time__get_current_time" in kept and "rail__get-current-date" in kept
    assert "calculator__calculate" not in kept
    assert decision.added_because[POOL.index(CLOCK)] == "tells the date the ask needs ('wednesday')"


# Two browsers (MCP servers' tools); only one of them reads its page. A tool taking a URL that does not
# navigate (a fetch) is no browser.
BROWSERS = [
    tool("puppeteer__puppeteer_navigate", "Navigate to a URL", url="URL to navigate to"),
    tool("puppeteer__puppeteer_click", "Click an element on the page", selector="CSS selector"),
    tool("playwright__playwright_iframe_click", "Click an element in an iframe", iframeSelector="CSS", selector="CSS"),
    tool("playwright__playwright_navigate", "Navigate to a URL", url="URL to navigate to", browserType="chromium"),
    tool("playwright__playwright_click", "Click an element on the page", selector="CSS selector"),
    tool("playwright__playwright_fill", "fill out an input field", selector="CSS selector", value="Value"),
    tool("playwright__playwright_get_visible_html", "Get the HTML content of the current page.", clean="bool"),
    tool("playwright__playwright_screenshot", "Take a screenshot of the current page", fullPage="bool"),
    tool("fetch__fetch", "Fetches a URL from the internet as markdown.", url="URL to fetch"),
]
WEB_POOL = [*TOOLS, *BROWSERS]


def test_a_browser_is_a_navigator_with_the_plainest_tool_of_each_page_role_of_its_family() -> None:
    facts = [tool_facts(t) for t in WEB_POOL]
    found = utilities(facts, families(facts))
    assert [names(WEB_POOL, kit) for kit in found.browsers] == [
        ["puppeteer__puppeteer_navigate", "puppeteer__puppeteer_click"],
        [
            "playwright__playwright_navigate",
            "playwright__playwright_get_visible_html",
            "playwright__playwright_click",  # not the iframe's click: more name words
            "playwright__playwright_fill",
            "playwright__playwright_screenshot",
        ],
    ]


def test_an_ask_naming_the_web_or_a_shop_brings_the_fullest_browser_s_kit() -> None:
    facts = [tool_facts(t) for t in WEB_POOL]
    found = utilities(facts, families(facts))
    puppeteer_first = np.array([10, *range(len(WEB_POOL))[:10], *range(11, len(WEB_POOL))])
    added = utility_additions(words("Find the latest iphone prices at amazon"), found, puppeteer_first, {14})
    # Puppeteer ranks better, but cannot read its page: Playwright's kit comes, but what is kept already.
    assert names(WEB_POOL, added) == [
        "playwright__playwright_navigate",
        "playwright__playwright_get_visible_html",
        "playwright__playwright_fill",
        "playwright__playwright_screenshot",
    ]
    assert set(added.values()) == {"browses the web the ask names ('amazon')"}
    assert utility_additions(words("Recommend a monitor, with links to buy"), found, puppeteer_first, set())
    assert utility_additions(words("Find the latest iphone prices"), found, puppeteer_first, set()) == {}


def test_the_router_forwards_the_browser_for_a_shop_no_tool_names() -> None:
    chat = {"messages": [{"role": "user", "content": "Find the best selling gpus from amazon and tell me the links"}]}
    decision = ToolRouter(ToolIndex()).route(chat, WEB_POOL, RoutingPolicy(mode="keyword", k_floor=1))
    kept = names(WEB_POOL, decision.keep)
    assert "playwright__playwright_navigate" in kept and "playwright__playwright_get_visible_html" in kept
    assert "puppeteer__puppeteer_navigate" not in kept
    navigate = WEB_POOL.index(BROWSERS[3])
    assert decision.added_because[navigate] == "browses the web the ask names ('amazon')"
