"""The facts every translator shares: stop reasons, the usage split, data URLs."""

import base64

import pytest

from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url, stop_reason, stop_sequences, text_of
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ImagePart, ImageURL, PromptTokensDetails, TextPart


@pytest.mark.parametrize(
    ("provider_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_provider_stop_reasons_become_finish_reasons(provider_reason: str | None, finish: str) -> None:
    assert finish_reason(provider_reason) == finish


def test_finish_reasons_become_stop_reasons_and_a_stop_sequence_is_named() -> None:
    assert stop_reason("stop") == "end_turn"
    assert stop_reason("stop", "halt") == "stop_sequence"
    assert stop_reason("stop", "") == "stop_sequence"  # the provider said a stop sequence, not which
    assert stop_reason("length") == "max_tokens"
    assert stop_reason("tool_calls") == "tool_use"


def test_stop_sequences_are_a_list_without_blanks() -> None:
    assert stop_sequences(None) == [] and stop_sequences("") == []
    assert stop_sequences("END") == ["END"]
    assert stop_sequences(["A", "", "B"]) == ["A", "B"]


def test_usage_split_round_trips_through_the_canonical_total() -> None:
    split = TokenUsage(input=32, output=7, cache_read=10, cache_write=3)
    canonical = split.canonical()
    assert canonical.prompt_tokens == 45 and canonical.total_tokens == 52 and split.prompt == 45
    assert canonical.prompt_tokens_details == PromptTokensDetails(cached_tokens=10, cache_creation_tokens=3)
    assert TokenUsage.from_canonical(canonical) == split
    assert TokenUsage.from_canonical(None) == TokenUsage()


def test_data_urls_parse_and_bad_base64_is_a_400() -> None:
    payload = base64.b64encode(b"\x89PNG").decode()
    assert parse_data_url(f"data:image/png;base64,{payload}") == ("image/png", payload)
    assert parse_data_url("https://example.com/cat.png") is None
    with pytest.raises(OrqenError) as err:
        parse_data_url("data:image/png;base64,not*base64")
    assert err.value.http_status == 400


def test_text_of_reads_strings_and_text_parts() -> None:
    assert text_of("hi") == "hi"
    image = ImagePart(image_url=ImageURL(url="https://example.com/cat.png"))
    assert text_of([TextPart(text="a"), image, TextPart(text="b")]) == "ab"
    assert text_of(None) == ""
