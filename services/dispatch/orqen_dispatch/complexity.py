"""How complex an ask is, for orqen/auto: a few measured features combined by a fitted model.

The features are what the request and the optimizer's plan already show: the ask (the last
user message: its length, its sentences and lines, its steps, the parts it joins with "and" or
commas, whether it asks for code or for reasoning), the context before it (its size, the earlier
turns) and, when the optimizer ranked the tools, the score lead of its first tool over its
second. The number of tools is not one: in the labelled asks it tells their sources apart
rather than their labels (every BFCL ask has tools, no hand-written one has).

The model is a logistic regression fitted offline on the labelled asks of
orqen_dispatch.labelled_asks (`services/optimizer/bench/auto.py fit`): its coefficients, the
date and the training set are in complexity_model.json. At run time it is a dot product.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Literal

from orqen.v1 import optimizer_pb2

AskKind = Literal["simple", "standard", "complex"]

# P(complex) bands: an ask the model leans towards simple without being sure of it goes to the
# balanced tier, a hedge cheaper than the capable tier.
COMPLEX_FROM = 0.5
SIMPLE_BELOW = 0.3
MAX_STEPS = 10
_CHARS_PER_TOKEN = 4
DECIDING = 3  # features named in the reason, at most

# Words that ask for code or for reasoning. They are features with fitted weights, not rules.
# fmt: off
_CODE_WORDS = frozenset(
    [
        "code", "coding", "function", "functions", "script", "implement", "implementation", "program", "programming",
        "class", "method", "refactor", "bug", "bugs", "compile", "compiler", "regex", "sql", "query", "api", "endpoint",
        "python", "javascript", "typescript", "java", "rust", "golang", "go", "c", "c++", "c#", "kotlin", "swift",
        "bash", "shell", "dockerfile", "kubernetes", "yaml", "json", "html", "css", "react", "algorithm", "stacktrace",
        "traceback", "exception", "segfault", "unittest", "pytest", "repository", "git", "recursion", "async", "thread"
    ]
)
_REASONING_WORDS = frozenset(
    [
        "prove", "proof", "derive", "derivation", "why", "analyze", "analyse", "analysis", "compare", "comparison",
        "evaluate", "assess", "design", "plan", "planning", "optimize", "optimise", "trade-off", "trade-offs",
        "tradeoffs", "justify", "critique", "debug", "diagnose", "investigate", "strategy", "architecture", "reason",
        "reasoning", "theorem", "estimate", "model", "simulate"
    ]
)
# fmt: on
_REASONING_PHRASES = ("step by step", "step-by-step", "pros and cons", "root cause", "what would happen")
_WORD = re.compile(r"\w[\w+#'-]*")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")

# A step split of the ask of its own (STEP COUNT, replace with orqen_optimizer.steps at merge):
# numbered or bulleted lines, else one step plus one for each sequencing word.
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)
_SEQUENCE_WORDS = frozenset(["then", "next", "afterwards", "finally", "also", "additionally", "furthermore", "plus"])
_SEQUENCE_PHRASES = ("after that", "as well as", "followed by", "and also", "once done", "in addition")


@dataclass(frozen=True, slots=True)
class AskFeatures:
    """The raw features of one request, as the reason shows them."""

    ask_words: int
    sentences: int
    steps: int
    joined: int  # "and"s and commas: the parts of an ask that wants several things at once
    code: bool
    reasoning: bool
    context_tokens: int  # the conversation before the ask
    turns: int  # user and assistant messages before the ask
    tool_lead: float  # the optimizer's first tool score minus its second; 0 when it did not rank tools

    def model_inputs(self) -> tuple[float, ...]:
        """The inputs the model weighs: counts on a log scale, flags as 0/1."""
        return (
            math.log1p(self.ask_words),
            math.log1p(self.sentences),
            float(self.steps),
            math.log1p(self.joined),
            float(self.code),
            float(self.reasoning),
            math.log1p(self.context_tokens),
            math.log1p(self.turns),
            self.tool_lead,
        )

    def describe(self, name: str) -> str | None:
        """One feature as the route reason names it, e.g. "3 steps"; None for one the ask lacks.

        A reason names what the ask has: "0 earlier turns" or "no code asked" may weigh in the
        model, but say little to a reader.
        """
        value = getattr(self, name)
        if not value:
            return None
        match name:
            case "ask_words":
                return f"ask of {_counted(value, 'word')}"
            case "sentences":
                return _counted(value, "sentence")
            case "steps":
                return _counted(value, "step")
            case "joined":
                return f"{value} 'and's or commas"
            case "code" | "reasoning":
                return f"{name} asked"
            case "context_tokens":
                return f"{value:,} tokens of context"
            case "turns":
                return _counted(value, "earlier turn")
            case _:
                return f"tool lead {value:.2f}"


def _counted(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


FEATURE_NAMES = tuple(f.name for f in fields(AskFeatures))


def ask_features(ask: str, context_chars: int, turns: int, lead: float = 0.0) -> AskFeatures:
    """The features of an ask (the last user message) after `context_chars` characters of conversation.

    `lead`: the optimizer's tool lead (tool_lead()), 0 when it did not rank the tools.
    """
    lowered = ask.lower()
    words = _WORD.findall(lowered)
    vocabulary = set(words)
    lines = sum(1 for line in ask.splitlines() if line.strip())
    return AskFeatures(
        ask_words=len(words),
        sentences=max(len(_SENTENCE_END.findall(ask)), lines, 1 if words else 0),
        steps=count_steps(ask, words),
        joined=words.count("and") + ask.count(", "),
        code=bool(vocabulary & _CODE_WORDS) or "```" in ask,
        reasoning=bool(vocabulary & _REASONING_WORDS) or any(p in lowered for p in _REASONING_PHRASES),
        context_tokens=context_chars // _CHARS_PER_TOKEN,
        turns=turns,
        tool_lead=lead,
    )


def count_steps(ask: str, words: Sequence[str]) -> int:
    """How many steps the ask has (STEP COUNT: a stand-in until the optimizer's step split is merged)."""
    if not words:
        return 0
    listed = len(_LIST_ITEM.findall(ask))
    lowered = " ".join(words)
    sequenced = 1 + sum(w in _SEQUENCE_WORDS for w in words) + sum(lowered.count(p) for p in _SEQUENCE_PHRASES)
    return min(max(listed, sequenced), MAX_STEPS)


def tool_lead(tool_routing: optimizer_pb2.RoutingTrace | None) -> float:
    """The optimizer's score lead of its first tool over its second, or 0 when it ranked fewer than two."""
    candidates = tool_routing.candidates if tool_routing is not None else ()
    if len(candidates) < 2:
        return 0.0
    best, second = sorted((c.score for c in candidates), reverse=True)[:2]
    return round(best - second, 4)


@dataclass(frozen=True, slots=True)
class Judgement:
    """The model's view of one ask: P(complex), the kind it means and the features that decided."""

    p_complex: float
    kind: AskKind
    deciding: tuple[str, ...]  # the features pushing hardest towards the kind, described

    @property
    def reason(self) -> str:
        return f"p {self.p_complex:.2f}" + "".join(f", {d}" for d in self.deciding)


@dataclass(frozen=True, slots=True)
class ComplexityModel:
    """A logistic regression over standardised AskFeatures.model_inputs()."""

    intercept: float
    weights: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]

    @classmethod
    def from_json(cls, raw: str | bytes) -> ComplexityModel:
        """The model of complexity_model.json's text; ValueError when its features are not AskFeatures'."""
        data = json.loads(raw)
        names = tuple(data["features"])
        if names != FEATURE_NAMES:
            raise ValueError(f"complexity model features {names} are not {FEATURE_NAMES}")
        return cls(
            intercept=float(data["intercept"]),
            weights=tuple(float(data["weights"][n]) for n in names),
            means=tuple(float(data["means"][n]) for n in names),
            scales=tuple(float(data["scales"][n]) for n in names),
        )

    def contributions(self, features: AskFeatures) -> list[float]:
        """Each feature's push on the log-odds of complex, relative to an average training ask."""
        return [
            w * (x - m) / s
            for w, x, m, s in zip(self.weights, features.model_inputs(), self.means, self.scales, strict=True)
        ]

    def judge(self, features: AskFeatures) -> Judgement:
        """P(complex) of the ask, its kind, and the features that decided it."""
        pushes = self.contributions(features)
        p = 1 / (1 + math.exp(-(self.intercept + sum(pushes))))
        kind: AskKind = "complex" if p >= COMPLEX_FROM else "simple" if p < SIMPLE_BELOW else "standard"
        towards = 1 if kind == "complex" else -1
        described = (
            (towards * push, features.describe(name)) for push, name in zip(pushes, FEATURE_NAMES, strict=True)
        )
        ranked = sorted(((push, text) for push, text in described if push > 0 and text), reverse=True)
        return Judgement(round(p, 4), kind, tuple(text for _, text in ranked[:DECIDING]))


@cache
def complexity_model() -> ComplexityModel:
    """The fitted model shipped with dispatch (complexity_model.json)."""
    return ComplexityModel.from_json(resources.files("orqen_dispatch").joinpath("complexity_model.json").read_text())
