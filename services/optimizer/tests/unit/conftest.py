"""Tools shared by the optimizer's unit tests."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from orqen_optimizer import embeddings


def tool(name: str, description: str, **properties: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {p: {"type": "string", "description": d}
                                                             for p, d in properties.items()}},
        },
    }  # fmt: skip


TOOLS = [
    tool("get_weather", "Current weather for a city.", city="The city name"),
    tool("convert_currency", "Convert an amount between currencies.", amount="How much", to="Target currency"),
    tool("book_flight", "Book a flight between two airports.", origin="IATA code", destination="IATA code"),
    tool("send_email", "Send an email to a recipient.", to="Address", body="Text"),
    tool("search_hotels", "Find hotels in a city for given dates.", city="City", checkin="Date"),
    tool("translate_text", "Translate text into another language.", text="Text", target="Language code"),
    tool("get_stock_price", "Latest price of a stock ticker.", ticker="Symbol"),
    tool("create_calendar_event", "Create an event in the user's calendar.", title="Title", start="Start time"),
    tool("calculate_route", "Driving directions between two addresses.", origin="From", destination="To"),
    tool("set_reminder", "Remind the user at a time.", text="What", at="When"),
]


@pytest.fixture
def tools() -> list[dict[str, Any]]:
    """Ten everyday tools (more than a small toolset)."""
    return TOOLS


class RecordingSession:
    """The encoder's ONNX session, recording the thread each run is on (and failing when told to)."""

    def __init__(self, session: Any) -> None:
        self.session, self.threads, self.fail = session, list[str](), False
        self.held: threading.Event | None = None  # runs ahead wait for it when set

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.threads.append(threading.current_thread().name)
        if self.held is not None and threading.current_thread().name == "embedding-ahead":
            assert self.held.wait(10)
        if self.fail:
            raise RuntimeError("the run failed")
        return self.session.run(names, feed)


def recording_runs(monkeypatch: pytest.MonkeyPatch) -> RecordingSession:
    """The process's encoder, its runs recorded, in line and ahead, for the test's duration."""
    encoder = embeddings.encoder()
    recording = RecordingSession(encoder._session)
    monkeypatch.setattr(encoder, "_session", recording)
    monkeypatch.setattr(encoder._ahead, "_session", recording)
    return recording
