"""Tool families inferred from the tool set, and the core tools a family in play adds (orqen_optimizer.families)."""

from __future__ import annotations

from orqen_optimizer.families import core_additions, families
from orqen_optimizer.tools import returned, tool_facts

from .conftest import tool

FS = "This tool belongs to the Gorilla file system."
FILE_SYSTEM = [
    tool("cd", f"{FS} Change the current working directory.", folder="Folder name"),
    tool("grep", f"{FS} Search a file for lines matching a pattern.", file_name="File", pattern="Pattern"),
    tool("find", f"{FS} Find files by name.", file_name="Name"),
    tool("du", f"{FS} Disk usage of the current directory."),
]
WORD = [
    tool("word__create_document", "Create a new Word document.", filename="File"),
    tool("word__add_paragraph", "Add a paragraph to a Word document.", filename="File", text="Text"),
    tool("word__add_picture", "Add an image to a Word document.", filename="File", image_path="Path"),
]
CAR = "This tool belongs to the vehicle control system."
VEHICLE = [
    tool(
        "estimate_distance", f"{CAR} Estimates the distance between two cities.", cityA="The zipcode of the first city."
    ),
    tool("get_zipcode_based_on_city", f"{CAR} Finds the zipcode of a city.", city="City name"),
    tool("set_navigation", f"{CAR} Navigates to the destination.", destination="Street, city"),
]
OTHERS = [tool("github_list_issues", "List issues."), tool("github_create_issue", "Open an issue."),
          tool("github_close_issue", "Close an issue."), tool("get_weather", "Weather now.")]  # fmt: skip


def facts_of(tools: list[dict]) -> list:  # type: ignore[type-arg]
    return [tool_facts(t) for t in tools]


def test_families_come_from_server_prefixes_shared_descriptions_and_name_prefixes() -> None:
    found = {f.key: f.members for f in families(facts_of(FILE_SYSTEM + WORD + OTHERS))}
    assert found == {
        f"description '{FS}'": (0, 1, 2, 3),
        "server word": (4, 5, 6),
        "prefix github": (7, 8, 9),
    }


def test_a_prerequisite_navigation_tool_of_the_family_in_play_is_added_with_its_reason() -> None:
    facts = facts_of(FILE_SYSTEM + OTHERS)
    added = core_additions(facts, kept=[1, 2, 3], order=[1, 2, 3, 0, 4, 5, 6, 7], called=set())
    assert [(facts[a.tool].name, a.reason) for a in added] == [
        ("cd", f"family description '{FS}' is in play (its grep ranks first): a navigation or state tool")
    ]


def test_what_the_kept_tools_edit_is_created_by_the_familys_create_tool() -> None:
    facts = facts_of(WORD + OTHERS)
    added = core_additions(facts, kept=[1, 2], order=[1, 2, 0, 3], called=set())
    assert [(facts[a.tool].name, a.reason.split(": ")[-1]) for a in added] == [
        ("word__create_document", "creates what its kept tools edit")
    ]


def test_a_tool_giving_what_a_kept_tool_takes_is_added() -> None:
    facts = facts_of(VEHICLE + OTHERS)
    added = core_additions(facts, kept=[0, 3, 4, 5, 6], order=[0, 3, 4, 5, 6, 2, 1], called=set())
    assert [(facts[a.tool].name, a.reason.split(": ")[-1]) for a in added] == [
        ("get_zipcode_based_on_city", "gives the zipcode that estimate_distance takes")
    ]


def test_a_family_read_by_title_brings_its_search_tool() -> None:
    # LiveMCPBench: the router kept the Wikipedia tools that read an article by its title, not the one
    # that finds the title.
    wiki = [
        tool("wikipedia__get_summary", "Get a summary of a Wikipedia article.", title="Title"),
        tool("wikipedia__get_links", "Get the links contained within a Wikipedia article.", title="Title"),
        tool("wikipedia__search_wikipedia", "Search Wikipedia for articles matching a query.", query="Query"),
    ]
    facts = facts_of(wiki + OTHERS)
    added = core_additions(facts, kept=[0, 1, 3], order=[0, 1, 3, 4, 2], called=set())
    assert [(facts[a.tool].name, a.reason) for a in added] == [
        (
            "wikipedia__search_wikipedia",
            "family server wikipedia is in play (its wikipedia__get_summary ranks first): "
            "finds what its kept tools look up",
        )
    ]
    # A family whose kept tools search already needs no other search tool.
    searching = facts_of([*wiki, tool("wikipedia__find_pages", "Find pages.", text="Text")])
    assert core_additions(searching, kept=[0, 3], order=[0, 3, 2, 1], called=set()) == []


def test_no_family_in_play_adds_nothing() -> None:
    facts = facts_of(FILE_SYSTEM + OTHERS)
    assert core_additions(facts, kept=[7, 1, 4, 5, 6], order=[7, 1, 4, 5, 6, 0], called=set()) == []  # one, not first
    assert core_additions(facts, kept=[], order=[], called=set()) == []


def test_a_family_the_conversation_used_is_in_play() -> None:
    facts = facts_of(FILE_SYSTEM + OTHERS)
    added = core_additions(facts, kept=[7, 1, 4, 5, 6], order=[7, 1, 4, 5, 6, 0], called={"find"})
    assert [facts[a.tool].name for a in added] == ["cd"]
    assert "the conversation called its tools" in added[0].reason


def test_added_tools_stay_within_the_token_budget() -> None:
    big = tool("login", f"{FS} Log in. " + "Very long description. " * 200)
    facts = facts_of([*FILE_SYSTEM, big])
    added = core_additions(facts, kept=[1, 2, 3], order=[1, 2, 3, 4, 0], called=set())
    assert [facts[a.tool].name for a in added] == ["cd"]  # login, ranked before it, costs more than the budget


def test_a_family_whose_tool_ranks_first_for_a_step_is_in_play() -> None:
    facts = facts_of(FILE_SYSTEM + OTHERS)
    added = core_additions(facts, kept=[7, 1, 4, 5, 6], order=[7, 1, 4, 5, 6, 0], called=set(), leaders=[7, 1])
    assert [(facts[a.tool].name, a.reason) for a in added] == [
        ("cd", f"family description '{FS}' is in play (its grep ranks first for a step): a navigation or state tool")
    ]


def test_two_kept_tools_alone_do_not_put_a_family_in_play() -> None:
    facts = facts_of(FILE_SYSTEM + OTHERS)
    assert core_additions(facts, kept=[7, 1, 2, 5], order=[7, 1, 2, 5, 0], called=set()) == []


def test_names_without_a_prefix_make_no_family_together() -> None:
    loose = [tool("getWeather", "Weather now."), tool("sendEmail", "Send mail."), tool("translateText", "Translate."),
             tool("calculate", "Add numbers.")]  # fmt: skip
    assert families(facts_of(loose)) == []


MAPS = [
    tool("maps__find_ev_charging_stations", "Locate charging stations near a point.", latitude="Lat", longitude="Lng"),
    tool(
        "maps__geocode_address",
        "Convert an address to geographic coordinates.\n\nArgs:\n    address: The address or latitude of a place\n"
        "Returns:\n    Matching places with their latitude/longitude.",
        address="The address",
    ),
    tool("maps__elevation", "Elevation of a point; it needs a latitude and a longitude.", place="Place name"),
    tool("maps__reverse_geocode", "Returns the address at a point.", latitude="Lat", longitude="Lng"),
]


def test_a_tool_whose_description_returns_what_a_kept_tool_takes_is_added() -> None:
    facts = facts_of(MAPS + OTHERS)
    added = core_additions(facts, kept=[0, 4, 5, 6, 7], order=[0, 4, 5, 6, 7, 2, 3, 1], called=set())
    # Not the tool that only mentions a latitude, nor the one that takes one: the one whose description returns it.
    assert [(facts[a.tool].name, a.reason.split(": ")[-1]) for a in added] == [
        ("maps__geocode_address", "returns the latitude that maps__find_ev_charging_stations takes")
    ]


def test_what_a_description_says_its_tool_returns_leaves_its_argument_list_aside() -> None:
    described = "Convert an address.\nArgs:\n    address: The address\nReturns:\n    Its latitude."
    assert returned(described) == "Returns:\n    Its latitude."
    assert returned("Searches the web and returns the pages found.") == "returns the pages found."
    assert returned("Looks up the weather.") == ""
