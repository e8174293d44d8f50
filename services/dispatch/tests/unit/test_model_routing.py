"""orqen/* routing strings pick what their rule says, among connected, enabled, fitting models."""

from typing import Any

import msgspec
import pytest

from orqen.v1 import optimizer_pb2
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatRequest, decode_request
from orqen_common.prices import Prices
from orqen_dispatch.available_models import Availability, model_infos
from orqen_dispatch.latency import ModelStats
from orqen_dispatch.model_profiles import ModelProfile
from orqen_dispatch.model_routing import (
    ROUTING_STRINGS,
    Choice,
    ModelChooser,
    RequestProfile,
    classify,
)
from orqen_dispatch.typical_listing import typical_profiles

PROVIDERS = {"openai", "anthropic", "bedrock", "groq"}


def model(name: str, provider: str, tier: str, capability: int, price_in: float, price_out: float, **more: Any) -> Any:
    return {
        "model": name,
        "provider": provider,
        "tier": tier,
        "capability": capability,
        "context_window": 200_000,
        "input": price_in,
        "output": price_out,
        "cached_input_price": price_in,
        "vision": True,
        "tools": True,
    } | more


SMALL_MODELS = [
    model("gpt-nano", "openai", "fast", 4, 0.1, 0.4),  # blended 0.175
    model("gpt-mini", "openai", "fast", 6, 0.4, 1.6),  # 0.7
    model("gpt-mid", "openai", "balanced", 7, 2.0, 8.0),  # 3.5
    model("o9-think", "openai", "balanced", 8, 1.0, 4.0, refuses=["max_tokens", "temperature"], vision=False),  # 1.75
    model("gpt-big", "openai", "capable", 9, 3.0, 15.0),  # 6.0
    model("claude-quick", "anthropic", "fast", 7, 1.0, 5.0),  # 2.0
    model("claude-top", "anthropic", "capable", 10, 5.0, 25.0),  # 10.0
    model("claude-twin", "anthropic", "capable", 10, 6.0, 30.0),  # 12.0
    model("claude-old", "anthropic", "capable", 10, 0.1, 0.1, legacy=True),
    model("groq/tiny", "groq", "fast", 3, 0.05, 0.08, tools=False, vision=False, context_window=8000),
]
SMALL = [ModelProfile(**{**m, "refuses": frozenset(m.get("refuses", ()))}) for m in SMALL_MODELS]
CHOOSER = ModelChooser()

# What the providers list, profiled as dispatch profiles them: the family table and the price library.
PRICES = Prices()
REAL = typical_profiles(PRICES)
BY_MODEL = {m.model: m for m in REAL}

HI = {"messages": [{"role": "user", "content": "hi"}]}


def chat(text: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **fields}


def picks(rule: str, body: dict[str, Any] | None = None, **kw: Any) -> list[str]:
    return [c.model for c in choose(rule, body, **kw)]


def choose(
    rule: str,
    body: dict[str, Any] | None = None,
    *,
    connected: set[str] = PROVIDERS,
    disabled: frozenset[str] = frozenset(),
    stats: dict[str, ModelStats] | None = None,
    pool: list[ModelProfile] = SMALL,
    tool_routing: optimizer_pb2.RoutingTrace | None = None,
) -> list[Choice]:
    models = [m for m in pool if m.provider in connected]
    return CHOOSER.choose(rule, request(body or HI), models, disabled, stats or {}, tool_routing)


def request(body: dict[str, Any]) -> ChatRequest:
    """The canonical request of a test body (model and messages filled in when it has none)."""
    return decode_request(msgspec.json.encode({"model": "m", "messages": [], **body}))


# Requested models and bad routing strings.


def test_a_model_that_is_not_a_routing_string_is_used_as_requested() -> None:
    assert choose("gpt-4o", connected=set()) == [Choice("gpt-4o", "requested")]
    assert choose("claude-old") == [Choice("claude-old", "requested")]  # named, a legacy model is still served


@pytest.mark.parametrize("rule", ["orqen/cheapest", "orqen/", "orqen/AUTO"])
def test_an_unknown_routing_string_is_a_400_listing_the_valid_ones(rule: str) -> None:
    with pytest.raises(OrqenError) as err:
        choose(rule)
    assert err.value.http_status == 400
    assert all(s in err.value.message for s in ROUTING_STRINGS)


@pytest.mark.parametrize("rule", ROUTING_STRINGS)
def test_no_connected_provider_is_a_400_naming_the_rule(rule: str) -> None:
    with pytest.raises(OrqenError) as err:
        choose(rule, connected=set())
    assert err.value.http_status == 400 and rule in err.value.message
    with pytest.raises(OrqenError) as err:
        choose(rule, connected={"groq"}, disabled=frozenset({"groq/tiny"}))
    assert err.value.http_status == 400 and rule in err.value.message


# orqen/cheap


def test_cheap_picks_the_lowest_blended_price_of_capability_5_or_more() -> None:
    choices = choose("orqen/cheap")
    assert [c.model for c in choices] == ["gpt-mini", "o9-think", "claude-quick"]
    assert choices[0].reason == "cheap: gpt-mini at $0.4/$1.6 per 1M tokens"
    assert choices[1].reason.endswith("(alternate 1)") and choices[2].reason.endswith("(alternate 2)")


def test_cheap_skips_disabled_and_unconnected_models() -> None:
    assert picks("orqen/cheap", disabled=frozenset({"gpt-mini"})) == ["o9-think", "claude-quick", "gpt-mid"]
    assert picks("orqen/cheap", connected={"anthropic"}) == ["claude-quick", "claude-top", "claude-twin"]


def test_cheap_without_a_capable_enough_model_takes_the_cheapest_and_says_so() -> None:
    [only] = choose("orqen/cheap", connected={"groq"})
    assert only.model == "groq/tiny" and "capability >= 5" in only.reason


# orqen/fast


def test_fast_without_measurements_takes_the_cheapest_fast_tier_models() -> None:
    choices = choose("orqen/fast")
    assert [c.model for c in choices] == ["groq/tiny", "gpt-nano", "gpt-mini"]
    assert "cheapest fast-tier model groq/tiny" in choices[0].reason and "not measured yet" in choices[0].reason


def test_fast_prefers_the_lowest_observed_latency_of_models_measured_often_enough() -> None:
    stats = {
        "claude-top": ModelStats(latency_ms=300, success_rate=1.0, calls=6),
        "gpt-mid": ModelStats(latency_ms=200, success_rate=0.9, calls=10),
        "groq/tiny": ModelStats(latency_ms=50, success_rate=1.0, calls=4),  # too few calls to trust
        "gpt-mini": ModelStats(latency_ms=20, success_rate=0.2, calls=20),  # mostly failing
    }
    choices = choose("orqen/fast", stats=stats)
    assert [c.model for c in choices] == ["gpt-mid", "claude-top", "groq/tiny"]
    assert choices[0].reason == "fast: gpt-mid at 200 ms observed (EWMA over 10 calls)"
    assert "only 4 calls measured" in choices[2].reason


def test_fast_without_a_fast_tier_model_takes_the_cheapest_and_says_so() -> None:
    fast_tier = frozenset({"gpt-nano", "gpt-mini", "claude-quick", "groq/tiny"})
    choices = choose("orqen/fast", disabled=fast_tier)
    assert [c.model for c in choices] == ["o9-think", "gpt-mid", "gpt-big"]
    assert "no fast-tier model connected" in choices[0].reason


# orqen/capable


def test_capable_takes_the_highest_capability_cheaper_first_and_never_a_legacy_model() -> None:
    choices = choose("orqen/capable")
    assert [c.model for c in choices] == ["claude-top", "claude-twin", "gpt-big"]
    assert choices[0].reason == "capable: claude-top, capability 10/10 at $5/$25 per 1M tokens"
    assert picks("orqen/capable", disabled=frozenset({"claude-top"}))[0] == "claude-twin"
    assert picks("orqen/capable", connected={"openai"})[0] == "gpt-big"


# orqen/auto


def test_auto_sends_a_simple_ask_to_the_fast_tier() -> None:
    choices = choose("orqen/auto", chat("What is the capital of France?"))
    assert choices[0].model == "groq/tiny"
    assert choices[0].reason.startswith("auto: simple ask (p 0.") and "ask of 6 words" in choices[0].reason
    assert choices[0].reason.endswith(" -> fast tier (groq/tiny)")
    assert [c.model for c in choices] == picks("orqen/fast")


CODING = "Write a Python function that parses a CSV file, then add unit tests and finally benchmark it."


def test_auto_sends_a_complex_ask_to_the_best_of_the_capable_tier() -> None:
    choices = choose("orqen/auto", chat(CODING))
    assert choices[0].model == "claude-top"
    assert "complex ask (p 1.00, 3 steps, code asked" in choices[0].reason
    assert choices[0].reason.endswith("-> capable tier (claude-top)")
    assert [c.model for c in choices] == ["claude-top", "claude-twin", "gpt-big"]


def test_auto_weighs_the_lead_the_optimizer_found_for_its_first_tool() -> None:
    trip = chat(
        "Book a flight to Rome and a hotel there",
        tools=[{"type": "function", "function": {"name": "w", "parameters": {}}}],
    )
    ranked = [optimizer_pb2.ToolCandidate(name="w", score=0.9), optimizer_pb2.ToolCandidate(name="x", score=0.2)]
    [clear, *_] = choose("orqen/auto", trip, tool_routing=optimizer_pb2.RoutingTrace(candidates=ranked))
    assert "simple ask" in clear.reason and "tool lead 0.70" in clear.reason
    clear_p = classify(RequestProfile.of(request(trip), optimizer_pb2.RoutingTrace(candidates=ranked))).p_complex
    ranked[1].score = 0.88
    close = classify(RequestProfile.of(request(trip), optimizer_pb2.RoutingTrace(candidates=ranked)))
    assert close.p_complex > clear_p and not any("tool lead" in d for d in close.deciding)


def test_auto_sends_an_ask_it_is_unsure_of_to_the_cheapest_balanced_model() -> None:
    proof = chat("Prove that there are infinitely many primes.")
    assert classify(RequestProfile.of(request(proof))).kind == "standard"  # p between 0.3 and 0.5
    assert picks("orqen/auto", proof) == ["o9-think", "gpt-mid"]
    assert picks("orqen/auto", {**proof, "temperature": 0.3}) == ["gpt-mid"]  # o9-think refuses temperature


def test_auto_degrades_to_any_tier_when_the_wanted_tier_is_not_connected() -> None:
    [only] = choose("orqen/auto", chat(CODING), connected={"groq"})
    assert only.model == "groq/tiny" and "no capable-tier model connected" in only.reason


# What the request needs.


def test_models_that_refuse_a_request_field_are_skipped() -> None:
    assert "o9-think" not in picks("orqen/cheap", chat(max_tokens=100))
    assert "o9-think" in picks("orqen/cheap", chat(max_completion_tokens=100))


def test_images_need_a_vision_model_and_tools_a_tool_model() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]}
    assert picks("orqen/fast", with_image) == ["gpt-nano", "gpt-mini", "claude-quick"]
    with pytest.raises(OrqenError) as err:
        choose("orqen/fast", chat(tools=[{"type": "function", "function": {"name": "f"}}]), connected={"groq"})
    assert err.value.http_status == 400 and "tool use" in err.value.message


def test_a_conversation_longer_than_a_context_window_skips_that_model() -> None:
    long = chat("x" * 40_000)  # about 10k tokens; groq/tiny holds 8k
    assert "groq/tiny" not in picks("orqen/fast", long)


def test_rules_pick_only_chat_models() -> None:
    embedder = ModelProfile(**{**SMALL_MODELS[0], "model": "embed-1", "kind": "embedding", "capability": 10})
    assert "embed-1" not in picks("orqen/capable", pool=[*SMALL, embedder])


def test_an_unpriced_model_comes_after_every_priced_one_for_cheap() -> None:
    free_looking = ModelProfile(**{**SMALL_MODELS[1], "model": "mystery", "input": 0, "output": 0, "priced": False})
    assert picks("orqen/cheap", pool=[*SMALL, free_looking])[:1] == ["gpt-mini"]
    [only] = choose("orqen/cheap", pool=[free_looking])
    assert only.reason == "cheap: mystery at an unknown price"


def test_an_unknown_context_window_is_no_bar_and_an_output_limit_is_one() -> None:
    unknown = ModelProfile(**{**SMALL_MODELS[1], "model": "unknown-window", "context_window": 0})
    assert picks("orqen/cheap", chat("x" * 1_000_000), pool=[unknown]) == ["unknown-window"]
    short = ModelProfile(**{**SMALL_MODELS[1], "model": "short-writer", "max_output_tokens": 1000})
    with pytest.raises(OrqenError, match="more output tokens"):
        choose("orqen/cheap", chat("hi", max_completion_tokens=4000), pool=[short])


# The classifier (orqen_dispatch.complexity; its own tests in test_complexity.py).


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (chat("hi"), "simple"),
        (chat("Translate 'good night' into Spanish."), "simple"),
        (chat(CODING), "complex"),
        (chat("1. Set up a Django project\n2. Add a REST endpoint\n3. Write tests\n4. Add a Dockerfile"), "complex"),
        (
            {"messages": [{"role": "user", "content": "x " * 20_000}, {"role": "user", "content": "Summarise it."}]},
            "complex",
        ),
        ({"messages": [{"role": "assistant", "content": "let me debug"}, {"role": "user", "content": "ok"}]}, "simple"),
        ({}, "simple"),
    ],
)
def test_classify(body: dict[str, Any], kind: str) -> None:
    assert classify(RequestProfile.of(request(body))).kind == kind


def test_the_profile_counts_tool_call_arguments_and_text_parts() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abc"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "12345"}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "xy"},
        ],
        "max_tokens": 50,
        "temperature": None,
    }
    profile = RequestProfile.of(request(body))
    assert (profile.total_chars, profile.last_user_text, profile.max_output_tokens) == (10, "abc", 50)
    assert "max_tokens" in profile.fields and "temperature" not in profile.fields


# GET /v1/models


def infos(pool: list[ModelProfile], connected: set[str], disabled: frozenset[str], stats: Any) -> list[Any]:
    return model_infos(Availability(tuple(m for m in pool if m.provider in connected), ()), disabled, stats)


def test_list_models_shows_connected_providers_models_with_toggles_prices_and_stats() -> None:
    stats = {"gpt-mini": ModelStats(latency_ms=120.5, success_rate=0.95, calls=40)}
    listed = infos(SMALL, {"openai", "groq"}, frozenset({"gpt-mid"}), stats)
    by_id = {m.id: m for m in listed}
    openai_and_groq = [m["model"] for m in SMALL_MODELS if m["provider"] in {"openai", "groq"}]
    assert [m.id for m in listed] == [*openai_and_groq, *ROUTING_STRINGS]
    assert not by_id["gpt-mid"].enabled and by_id["gpt-big"].enabled
    mini = by_id["gpt-mini"]
    assert (mini.provider, mini.tier, mini.input_price, mini.output_price, mini.cached_input_price) == (
        "openai",
        "fast",
        0.4,
        1.6,
        0.4,
    )
    assert (mini.latency_p50_ms, mini.success_rate, mini.calls) == (120.5, 0.95, 40)
    assert (mini.kind, mini.context_window, mini.tools, mini.vision, mini.capability) == (
        "chat",
        200_000,
        True,
        True,
        6,
    )
    assert by_id["gpt-big"].calls == 0
    auto = by_id["orqen/auto"]
    assert auto.enabled and auto.provider == "orqen" and auto.tier == "" and auto.input_price == 0
    assert auto.kind == "router"


def test_list_models_without_connected_providers_lists_disabled_routing_strings_only() -> None:
    listed = infos(SMALL, set(), frozenset(), {})
    assert [(m.id, m.enabled) for m in listed] == [(s, False) for s in ROUTING_STRINGS]


# Realistic lists: each rule keeps its promise whatever is connected.

ANTHROPIC_SDK_CHAT = chat("hello", max_tokens=1024, temperature=0.5)
SUBSETS = [PROVIDERS, {"openai"}, {"anthropic"}, {"bedrock"}, {"groq"}, {"anthropic", "bedrock"}]


def eligible(connected: set[str], body: dict[str, Any], disabled: frozenset[str] = frozenset()) -> list[ModelProfile]:
    profile = RequestProfile.of(request(body))
    return [
        e
        for e in REAL
        if e.provider in connected
        and e.kind == "chat"
        and e.model not in disabled
        and not e.legacy
        and profile.misfit(e) is None
    ]


def real(rule: str, body: dict[str, Any], connected: set[str], **kw: Any) -> list[ModelProfile]:
    choices = choose(rule, body, connected=connected, pool=REAL, **kw)
    assert 1 <= len(choices) <= 3 and len({c.model for c in choices}) == len(choices)
    entries = [BY_MODEL[c.model] for c in choices]
    assert all(e.provider in connected and e.kind == "chat" and not e.legacy for e in entries)
    return entries


def test_the_realistic_lists_are_priced_and_ranked_by_the_price_library_and_the_family_table() -> None:
    chat_models = [m for m in REAL if m.kind == "chat"]
    assert all(m.priced and m.input > 0 for m in chat_models)
    sonnet = BY_MODEL["claude-sonnet-4-6"]
    assert (sonnet.tier, sonnet.capability, sonnet.context_window, sonnet.input, sonnet.output) == (
        "capable",
        9,
        1_000_000,
        3.0,
        15.0,
    )
    assert "context_window=prices" in sonnet.sources and "tools=default" in sonnet.sources
    assert {
        BY_MODEL[m].kind for m in ("text-embedding-3-small", "dall-e-3", "whisper-1", "omni-moderation-latest")
    } == {
        "embedding",
        "image",
        "audio",
        "moderation",
    }


@pytest.mark.parametrize("connected", SUBSETS)
@pytest.mark.parametrize("body", [HI, ANTHROPIC_SDK_CHAT])
def test_real_cheap_pick_has_the_minimum_blended_price(connected: set[str], body: dict[str, Any]) -> None:
    pool = eligible(connected, body)
    capable_enough = [e for e in pool if e.capability >= 5] or pool
    pick = real("orqen/cheap", body, connected)[0]
    assert pick.blended_price == min(e.blended_price for e in capable_enough)
    assert pick.capability >= 5 or not [e for e in pool if e.capability >= 5]


@pytest.mark.parametrize("connected", SUBSETS)
@pytest.mark.parametrize("body", [HI, ANTHROPIC_SDK_CHAT])
def test_real_capable_pick_has_the_highest_capability_then_lowest_price(
    connected: set[str], body: dict[str, Any]
) -> None:
    pool = eligible(connected, body)
    pick = real("orqen/capable", body, connected)[0]
    best = max(e.capability for e in pool)
    assert pick.capability == best
    assert pick.blended_price == min(e.blended_price for e in pool if e.capability == best)


@pytest.mark.parametrize("connected", SUBSETS)
def test_real_fast_pick_without_measurements_is_the_cheapest_of_the_fast_tier(connected: set[str]) -> None:
    fast_tier = [e for e in eligible(connected, HI) if e.tier == "fast"]
    picked = real("orqen/fast", HI, connected)
    assert all(e.tier == "fast" for e in picked)
    assert picked[0].blended_price == min(e.blended_price for e in fast_tier)


def test_real_fast_pick_follows_measured_latency() -> None:
    stats = {
        "claude-sonnet-4-5": ModelStats(latency_ms=900, success_rate=1.0, calls=50),
        "gpt-4.1": ModelStats(latency_ms=350, success_rate=0.99, calls=50),
        "groq/llama-3.1-8b-instant": ModelStats(latency_ms=100, success_rate=1.0, calls=2),
    }
    assert [e.model for e in real("orqen/fast", HI, PROVIDERS, stats=stats)][:2] == ["gpt-4.1", "claude-sonnet-4-5"]


@pytest.mark.parametrize("connected", SUBSETS)
def test_real_auto_follows_the_classification(connected: set[str]) -> None:
    assert real("orqen/auto", HI, connected) == real("orqen/fast", HI, connected)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    complex_ask = chat(CODING, tools=tools)
    capable = [e for e in eligible(connected, complex_ask) if e.tier == "capable"]
    pick = real("orqen/auto", complex_ask, connected)[0]
    assert pick.tools
    if capable:
        assert pick.tier == "capable" and pick.capability == max(e.capability for e in capable)
    standard = chat("Prove that there are infinitely many primes.")
    balanced = [e for e in eligible(connected, standard) if e.tier == "balanced"]
    pick = real("orqen/auto", standard, connected)[0]
    if balanced:
        assert pick.tier == "balanced" and pick.blended_price == min(e.blended_price for e in balanced)


@pytest.mark.parametrize("rule", ROUTING_STRINGS)
def test_real_rules_never_pick_a_disabled_model_or_one_that_refuses_the_request(rule: str) -> None:
    first = real(rule, ANTHROPIC_SDK_CHAT, PROVIDERS)[0]
    assert not first.refuses & {"max_tokens", "temperature"}
    again = real(rule, ANTHROPIC_SDK_CHAT, PROVIDERS, disabled=frozenset({first.model}))
    assert first.model not in {e.model for e in again}
