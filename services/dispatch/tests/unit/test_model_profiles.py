"""What a listed model can do and how it ranks: each capability from the first source that says."""

from __future__ import annotations

import pytest

from orqen_dispatch.model_profiles import DEFAULT_FAMILY, ModelOverride, family_of, profile
from orqen_dispatch.price_facts import PriceFacts
from orqen_dispatch.providers import model_lists
from orqen_dispatch.providers.model_lists import ListedModel, kind_by_name

UNPRICED = PriceFacts(None, None, None, None)


@pytest.mark.parametrize(
    ("model_id", "tier", "capability"),
    [
        ("gpt-4o-mini-2024-07-18", "fast", 5),
        ("gpt-4o", "balanced", 7),
        ("gpt-5-nano", "balanced", 5),
        ("gpt-5", "capable", 9),
        ("o4-mini", "balanced", 7),
        ("o3", "capable", 9),
        ("claude-haiku-4-5", "fast", 7),
        ("claude-3-5-haiku-20241022", "fast", 5),
        ("claude-sonnet-4-6", "capable", 9),
        ("claude-3-7-sonnet-20250219", "balanced", 7),
        ("claude-opus-4-5", "capable", 10),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", "fast", 4),
        ("amazon.nova-micro-v1:0", "fast", 3),
        ("meta.llama3-1-8b-instruct-v1:0", "fast", 3),
        ("llama-3.1-8b-instant", "fast", 3),
        ("llama-3.3-70b-versatile", "balanced", 6),
        ("deepseek-r1", "capable", 8),
        ("deepseek-r1-distill-llama-70b", "balanced", 6),  # a distilled 70B ranks as the 70B it is
        ("my-own-finetune", "balanced", 5),
    ],
)
def test_the_family_table_ranks_models_by_name(model_id: str, tier: str, capability: int) -> None:
    family = family_of(model_id)
    assert (family.tier, family.capability) == (tier, capability)


def test_an_unknown_model_gets_the_middling_default_with_tools_and_without_vision() -> None:
    assert family_of("my-own-finetune") is DEFAULT_FAMILY
    assert (DEFAULT_FAMILY.tier, DEFAULT_FAMILY.capability, DEFAULT_FAMILY.tools, DEFAULT_FAMILY.vision) == (
        "balanced",
        5,
        True,
        False,
    )


def test_each_capability_comes_from_the_first_source_that_says() -> None:
    listed = ListedModel(id="claude-sonnet-4-6", vision=False, context_window=None, max_output_tokens=64_000)
    prices = PriceFacts(3.0, 15.0, 0.3, 1_000_000)
    override = ModelOverride(tools=False, vision=True, context_window=50_000, max_output_tokens=1_000, tier="fast")
    got = profile("claude-sonnet-4-6", "anthropic", listed, 1_800_000_000, prices, override)
    # The list said vision and output limit; the price library the window; configuration tools and tier.
    assert (got.vision, got.max_output_tokens, got.context_window, got.tools, got.tier) == (
        False,
        64_000,
        1_000_000,
        False,
        "fast",
    )
    assert got.sources == "tools=config vision=provider context_window=prices max_output_tokens=provider"
    assert (got.input, got.output, got.cached_input_price, got.priced, got.listed_at) == (
        3.0,
        15.0,
        0.3,
        True,
        1_800_000_000,
    )
    bare = profile("x/y", "x", ListedModel(id="y"), 0, UNPRICED, None)
    assert (bare.tools, bare.vision, bare.context_window, bare.max_output_tokens, bare.priced) == (
        True,
        False,
        0,
        0,
        False,
    )
    assert bare.blended_price == float("inf")
    assert bare.sources == "tools=default vision=default context_window=default max_output_tokens=default"


def test_reasoning_models_refuse_sampling_fields() -> None:
    assert {"temperature", "max_tokens"} <= profile(
        "o4-mini", "openai", ListedModel(id="o4-mini"), 0, UNPRICED, None
    ).refuses
    assert not profile("gpt-4o", "openai", ListedModel(id="gpt-4o"), 0, UNPRICED, None).refuses


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("gpt-4o", "chat"),
        ("text-embedding-3-large", "embedding"),
        ("nomic-embed-text-v1.5", "embedding"),
        ("dall-e-3", "image"),
        ("gpt-image-1", "image"),
        ("whisper-1", "audio"),
        ("tts-1-hd", "audio"),
        ("gpt-4o-mini-transcribe", "audio"),
        ("gpt-4o-realtime-preview", "audio"),
        ("omni-moderation-latest", "moderation"),
        ("rerank-english-v3.0", "rerank"),
        ("babbage-002", "completion"),
        ("gpt-3.5-turbo-instruct", "completion"),
        ("Llama-3.1-8B-Instruct", "chat"),  # an instruct chat model, not the legacy completions one
        ("o3-pro", "responses"),
        ("codex-mini-latest", "responses"),
        ("sora-2", "video"),
    ],
)
def test_a_kind_is_read_from_the_name_where_the_list_does_not_say(model_id: str, kind: str) -> None:
    assert kind_by_name(model_id) == kind


def test_a_compatible_servers_own_fields_are_read() -> None:
    answer = model_lists.openai_list_decoder.decode(
        b'{"object": "list", "data": [{"id": "qwen", "object": "model", "created": 5, "owned_by": "vllm",'
        b' "max_model_len": 32768}, {"id": "bge", "type": "embedding", "context_length": 512}, {"id": ""}]}'
    )
    assert model_lists.openai_models(answer) == [
        ListedModel(id="qwen", created=5, context_window=32768),
        ListedModel(id="bge", kind="embedding", context_window=512),
    ]


def test_anthropic_leaves_retired_models_out_and_marks_deprecated_ones() -> None:
    page = model_lists.anthropic_page_decoder.decode(
        b'{"data": [{"id": "a", "type": "model", "lifecycle": "active", "created_at": "2025-01-01T00:00:00Z",'
        b' "capabilities": {"image_input": {"supported": true}}},'
        b' {"id": "b", "type": "model", "lifecycle": "deprecated"},'
        b' {"id": "c", "type": "model", "lifecycle": "retired"},'
        b' {"id": "d", "type": "model"}], "has_more": false, "first_id": "a", "last_id": "d"}'
    )
    assert model_lists.anthropic_models(page) == [
        ListedModel(id="a", created=1_735_689_600, vision=True),
        ListedModel(id="b", legacy=True),
        ListedModel(id="d"),  # an older answer without lifecycle or capabilities
    ]
