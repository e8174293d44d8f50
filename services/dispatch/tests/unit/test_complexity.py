"""orqen/auto's complexity model: its features, its fitted coefficients, and its choices on the labelled asks."""

import json
import math
from collections import Counter
from datetime import date
from importlib import resources

import msgspec
import pytest

from orqen.v1 import optimizer_pb2
from orqen_common.formats.openai import ChatRequest, decode_request
from orqen_common.prices import Prices
from orqen_dispatch import labelled_asks
from orqen_dispatch.complexity import (
    COMPLEX_FROM,
    FEATURE_NAMES,
    SIMPLE_BELOW,
    AskFeatures,
    ComplexityModel,
    ask_features,
    complexity_model,
    count_steps,
    tool_lead,
)
from orqen_dispatch.labelled_asks import LabelledAsk
from orqen_dispatch.model_routing import ModelChooser, RequestProfile, classify
from orqen_dispatch.typical_listing import typical_profiles

ASKS = labelled_asks.load()
TEST = [a for a in ASKS if a.split == "test"]


MODELS = [m for m in typical_profiles(Prices()) if m.provider in ("openai", "anthropic")]
CHOOSER = ModelChooser()
TIERS = {m.model: m.tier for m in MODELS}


def ranking(*scores: float) -> optimizer_pb2.RoutingTrace:
    return optimizer_pb2.RoutingTrace(candidates=[optimizer_pb2.ToolCandidate(name=f"t{s}", score=s) for s in scores])


def request(ask: LabelledAsk) -> ChatRequest:
    return decode_request(msgspec.json.encode(ask.body()))


# The features.


def test_features_of_an_ask_and_its_context() -> None:
    features = ask_features("Write a Python script, then test it.\nAlso explain why it works.", 4000, 2)
    assert features == AskFeatures(
        ask_words=12,
        sentences=2,
        steps=3,  # one, "then", "also"
        joined=1,
        code=True,
        reasoning=True,
        context_tokens=1000,
        turns=2,
        tool_lead=0.0,
    )
    assert ask_features("", 0, 0) == AskFeatures(0, 0, 0, 0, False, False, 0, 0, 0.0)


@pytest.mark.parametrize(
    ("ask", "steps"),
    [
        ("hi", 1),
        ("Book a flight, then a hotel, and finally a car.", 3),
        ("1. install it\n2. configure it\n3) run it", 3),
        ("- one\n- two", 2),
        ("Do this after that do the other, as well as the third", 3),
        ("then " * 40, 10),  # capped
    ],
)
def test_count_steps(ask: str, steps: int) -> None:
    assert count_steps(ask, ask.lower().split()) == steps


def test_the_tool_lead_is_the_optimizers_first_score_minus_its_second() -> None:
    assert tool_lead(ranking(0.4, 0.9, 0.7)) == 0.2
    assert tool_lead(ranking(0.9)) == tool_lead(None) == tool_lead(optimizer_pb2.RoutingTrace()) == 0.0


def test_the_profile_gives_the_ask_its_context_turns_and_tool_lead() -> None:
    body = {
        "model": "orqen/auto",
        "messages": [
            {"role": "system", "content": "s" * 100},
            {"role": "user", "content": "u" * 200},
            {"role": "assistant", "content": "a" * 100},
            {"role": "user", "content": "Translate this."},
        ],
    }
    profile = RequestProfile.of(decode_request(msgspec.json.encode(body)), ranking(0.9, 0.5))
    assert (profile.turns_before_ask, profile.tool_lead) == (2, 0.4)
    judged = classify(profile)
    expected = complexity_model().judge(ask_features("Translate this.", 400, 2, 0.4))
    assert judged == expected  # the context is the 400 characters before the ask


# The model.


def test_the_shipped_model_is_dated_names_its_training_set_and_weighs_every_feature() -> None:
    raw = json.loads(resources.files("orqen_dispatch").joinpath("complexity_model.json").read_text())
    assert date.fromisoformat(raw["fitted"]) and "train split" in raw["training_set"]
    assert tuple(raw["features"]) == FEATURE_NAMES
    assert all(raw["weights"][name] != 0 for name in FEATURE_NAMES)  # each measured feature carries weight
    assert complexity_model().weights == tuple(raw["weights"][n] for n in FEATURE_NAMES)


def test_a_model_for_other_features_is_refused() -> None:
    raw = json.loads(resources.files("orqen_dispatch").joinpath("complexity_model.json").read_text())
    with pytest.raises(ValueError, match="features"):
        ComplexityModel.from_json(json.dumps(raw | {"features": raw["features"][:-1]}))


def test_the_judgement_is_a_dot_product_banded_into_kinds() -> None:
    # A unit weight on steps, none elsewhere: the log-odds of complex are steps - 2.5.
    model = ComplexityModel(-2.5, (0, 0, 1, 0, 0, 0, 0, 0, 0), (0.0,) * 9, (1.0,) * 9)
    for ask, kind in (("hi", "simple"), ("a then b", "standard"), ("a then b then c", "complex")):
        judged = model.judge(ask_features(ask, 0, 0))
        steps = count_steps(ask, ask.split())
        assert judged.p_complex == pytest.approx(1 / (1 + math.exp(2.5 - steps)), abs=1e-4)
        assert judged.kind == kind
        assert judged.deciding == ((f"{steps} step{'s' if steps > 1 else ''}",) if kind == "complex" else ())
    assert SIMPLE_BELOW < 1 / (1 + math.exp(0.5)) < COMPLEX_FROM


def test_the_reason_names_the_features_that_decided() -> None:
    complex_ask = complexity_model().judge(
        ask_features(
            "Write a Python function that parses a CSV file, then add unit tests and finally benchmark it.", 0, 0
        )
    )
    assert complex_ask.kind == "complex" and "3 steps" in complex_ask.deciding and "code asked" in complex_ask.deciding
    assert complex_ask.reason.startswith(f"p {complex_ask.p_complex:.2f}, ")
    simple_ask = complexity_model().judge(ask_features("What is the capital of Peru?", 0, 0))
    assert simple_ask.kind == "simple" and "ask of 6 words" in simple_ask.deciding


def test_a_clear_lead_of_the_optimizers_first_tool_makes_an_ask_simpler() -> None:
    ask = "Book a flight to Rome and a hotel there"
    clear, close = (complexity_model().judge(ask_features(ask, 0, 0, tool_lead(ranking(0.9, s)))) for s in (0.2, 0.88))
    assert clear.p_complex < close.p_complex
    assert "tool lead 0.70" in clear.deciding
    # No ranking (no tools, or too few to route) is no evidence and never named.
    assert not any("tool lead" in d for d in complexity_model().judge(ask_features(ask, 0, 0)).deciding)


# The labelled asks and orqen/auto's choices on them.


def test_the_labelled_asks_state_where_each_label_came_from_and_split_by_id() -> None:
    assert len({a.id for a in ASKS}) == len(ASKS)
    sources = Counter((a.source == "hand", a.label, a.split) for a in ASKS)
    assert all(sources[hand, label, split] >= 30 for hand in (True, False) for label in ("simple", "complex")
               for split in ("train", "test"))  # fmt: skip
    assert 0.25 < len(TEST) / len(ASKS) < 0.35
    bfcl = [a for a in ASKS if a.source != "hand"]
    assert all(("1 call(s)" in a.why) == (a.label == "simple") for a in bfcl)
    assert all(a.why == "hand-labelled by the rule in README.md" for a in ASKS if a.source == "hand")


def test_orqen_auto_on_the_test_asks_picks_the_capable_tier_for_complex_asks_and_a_cheaper_one_for_simple() -> None:
    """Accuracy floors a refit must keep; `make bench-optimizer` prints the figures themselves."""
    right = Counter[bool]()
    fast_for_complex = 0
    for ask in TEST:
        [first, *_] = CHOOSER.choose("orqen/auto", request(ask), MODELS, (), {}, ask.routing())
        tier = TIERS[first.model]
        judged = classify(RequestProfile.of(request(ask), ask.routing()))
        assert first.reason.startswith(f"auto: {judged.kind} ask (p ")
        assert not any(d.startswith(("0 ", "no ")) for d in judged.deciding)  # a reason names what the ask has
        right[ask.source == "hand"] += (tier == "capable") == (ask.label == "complex")
        fast_for_complex += tier == "fast" and ask.label == "complex"
    hand = sum(a.source == "hand" for a in TEST)
    assert right[True] / hand >= 0.9
    assert right[False] / (len(TEST) - hand) >= 0.75
    assert fast_for_complex / len(TEST) <= 0.05
