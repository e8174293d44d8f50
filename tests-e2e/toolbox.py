"""A dozen everyday tools in the OpenAI shape: more than the optimizer forwards unrouted, so a
request carrying them gets routed and leaves a routing trace."""

from __future__ import annotations

from typing import Any


def function_tool(name: str, description: str) -> dict[str, Any]:
    """An OpenAI function tool taking one `query` string."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }


TOOLBOX = [
    function_tool("get_weather", "Current weather and forecast for a city."),
    function_tool("get_stock_price", "Latest trading price of a stock ticker symbol."),
    function_tool("convert_currency", "Convert an amount of money between two currencies."),
    function_tool("book_flight", "Book a flight between two airports."),
    function_tool("search_hotels", "Find hotel rooms in a city for given dates."),
    function_tool("send_email", "Send an email message to a recipient."),
    function_tool("translate_text", "Translate text into another language."),
    function_tool("create_calendar_event", "Create an event in the user's calendar."),
    function_tool("calculate_route", "Driving directions between two addresses."),
    function_tool("set_reminder", "Remind the user of something at a given time."),
    function_tool("play_music", "Play a song, album or playlist."),
    function_tool("order_food", "Order a meal from a restaurant for delivery."),
]
