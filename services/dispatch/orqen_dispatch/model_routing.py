"""The orqen/* routing strings: which listed model answers a request, and why.

A caller may send a rule instead of a model: `orqen/cheap`, `orqen/fast`, `orqen/capable` or
`orqen/auto`. The rule picks among the chat models its connected providers list for the
account (orqen_dispatch.available_models) that it has not switched off and that can take the
request (tools, images, parameters, length, output limit). The pick comes first, followed by
up to two alternates of the same rule so dispatch can fall back without leaving it. Any other
model string is used as requested.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from orqen.v1 import optimizer_pb2
from orqen_common.allowed_models import ROUTING_PREFIX
from orqen_common.canonical import text_of
from orqen_common.errors import invalid_request
from orqen_common.formats.openai import AssistantMessage, ChatRequest, ImagePart, UserMessage
from orqen_dispatch.complexity import AskFeatures, Judgement, ask_features, complexity_model, tool_lead
from orqen_dispatch.latency import ModelStats
from orqen_dispatch.model_profiles import ModelProfile, Tier

ROUTING_STRINGS = ("orqen/auto", "orqen/cheap", "orqen/fast", "orqen/capable")
MAX_ALTERNATES = 2

# orqen/cheap ignores models too weak to be a sensible default answer.
CHEAP_MIN_CAPABILITY = 5
# orqen/fast trusts a measured latency only after a few calls, and only for a model that mostly
# answers: latency is averaged over successes, so a failing model would keep its old, good figure.
FAST_MIN_CALLS = 5
FAST_MIN_SUCCESS_RATE = 0.5

# A rough, optimistic token estimate: enough to rule out models the request clearly overflows.
_CHARS_PER_TOKEN = 4

log = structlog.get_logger(__name__)


class Choice(NamedTuple):
    """A model to try and why it was chosen (Attempt.reason, DispatchSummary.route_reason)."""

    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class RequestProfile:
    """What routing needs to know about a canonical chat request."""

    last_user_text: str
    total_chars: int
    tools: bool
    images: bool
    fields: frozenset[str]  # the top-level request fields that are set
    max_output_tokens: int
    turns_before_ask: int = 0  # user and assistant messages before the last user message
    tool_lead: float = 0.0  # the optimizer's first tool score minus its second, when it ranked tools

    @classmethod
    def of(cls, chat: ChatRequest, tool_routing: optimizer_pb2.RoutingTrace | None = None) -> RequestProfile:
        total = turns = turns_before_ask = 0
        images = False
        last_user = ""
        for message in chat.messages:
            content = message.content
            text = text_of(content)
            total += len(text)
            if isinstance(content, list):
                images = images or any(isinstance(p, ImagePart) for p in content)
            if isinstance(message, AssistantMessage):
                total += sum(len(call.function.arguments) for call in message.tool_calls or ())
                turns += 1
            elif isinstance(message, UserMessage):
                last_user, turns_before_ask = text, turns
                turns += 1
        limit = chat.max_completion_tokens or chat.max_tokens
        return cls(
            last_user_text=last_user,
            total_chars=total,
            tools=bool(chat.tools),
            images=images,
            fields=_fields_set(chat),
            max_output_tokens=limit if limit and limit > 0 else 0,
            turns_before_ask=turns_before_ask,
            tool_lead=tool_lead(tool_routing),
        )

    def misfit(self, entry: ModelProfile) -> str | None:
        """Why `entry` cannot take this request, or None when it can (an unknown limit is no bar)."""
        if self.tools and not entry.tools:
            return "tools need a model with tool use"
        if self.images and not entry.vision:
            return "images need a model with image input"
        refused = sorted(self.fields & entry.refuses)
        if refused:
            return f"the request sets {', '.join(refused)}, which some models refuse"
        if (
            entry.context_window
            and self.total_chars // _CHARS_PER_TOKEN + self.max_output_tokens > entry.context_window
        ):
            return "the conversation is longer than the models' context windows"
        if entry.max_output_tokens and self.max_output_tokens > entry.max_output_tokens:
            return "the request asks for more output tokens than the models write"
        return None


def classify(request: RequestProfile) -> Judgement:
    """orqen/auto's view of a request: simple asks go fast, complex ones to the capable tier.

    The fitted complexity model (orqen_dispatch.complexity) weighs the ask's features; the
    judgement names the features that decided.
    """
    return complexity_model().judge(ask_of(request))


def ask_of(request: RequestProfile) -> AskFeatures:
    """The features of the request's ask that orqen/auto weighs (computed only for orqen/auto)."""
    context = request.total_chars - len(request.last_user_text)
    return ask_features(request.last_user_text, context, request.turns_before_ask, request.tool_lead)


_Rule = Callable[[Sequence[ModelProfile], RequestProfile, Mapping[str, ModelStats]], list[Choice]]


class ModelChooser:
    """Turns a model string into the models to try, in order, among an account's listed models."""

    def __init__(self) -> None:
        self._rules: dict[str, _Rule] = {
            "orqen/auto": _auto,
            "orqen/cheap": _cheap,
            "orqen/fast": _fast,
            "orqen/capable": _capable,
        }

    def choose(
        self,
        model: str,
        chat: ChatRequest,
        models: Sequence[ModelProfile],
        disabled: Collection[str],
        stats: Mapping[str, ModelStats],
        tool_routing: optimizer_pb2.RoutingTrace | None = None,
    ) -> list[Choice]:
        """The model to try first, then up to MAX_ALTERNATES of the same rule; OrqenError 400 if none.

        `models`: the account's listed models (every kind). `tool_routing`: the optimizer's
        ranking of the request's tools, when it made one.
        """
        if not model.startswith(ROUTING_PREFIX):
            return [Choice(model, "requested")]
        rule = self._rules.get(model)
        if rule is None:
            raise invalid_request(f"Unknown routing string {model!r}; use one of {', '.join(ROUTING_STRINGS)}.")
        available = routable(models, disabled)
        if not available:
            raise invalid_request(
                f"No connected provider offers a model for {model}: connect a provider "
                "(or enable one of its models) first."
            )
        request = RequestProfile.of(chat, tool_routing)
        fitting = [e for e in available if request.misfit(e) is None]
        if not fitting:
            why = sorted({m for e in available if (m := request.misfit(e))})
            raise invalid_request(f"No connected model for {model} can take this request: {'; '.join(why)}.")
        ranked = rule(fitting, request, stats)
        return ranked[:1] + [
            Choice(c.model, f"{c.reason} (alternate {i})") for i, c in enumerate(ranked[1 : 1 + MAX_ALTERNATES], 1)
        ]


def routable(models: Sequence[ModelProfile], disabled: Collection[str]) -> list[ModelProfile]:
    """The models a rule may pick: chat models, not retired, not switched off.

    Retired (legacy) models are still served to callers that name them; a rule never picks them.
    """
    return [m for m in models if m.kind == "chat" and not m.legacy and m.model not in disabled]


# Rules: each ranks the fitting candidates, best first, with a reason for every one.


def _cheap(
    candidates: Sequence[ModelProfile], request: RequestProfile, stats: Mapping[str, ModelStats]
) -> list[Choice]:
    pool, narrowed = _preferring(candidates, lambda e: e.capability >= CHEAP_MIN_CAPABILITY)
    caveat = "" if narrowed else f" (no connected model of capability >= {CHEAP_MIN_CAPABILITY})"
    return [Choice(e.model, f"cheap: {e.model} at {_prices(e)}{caveat}") for e in _cheapest_first(pool)]


def _fast(candidates: Sequence[ModelProfile], request: RequestProfile, stats: Mapping[str, ModelStats]) -> list[Choice]:
    return [Choice(e.model, "fast: " + why) for e, why in _fastest_first(candidates, stats)]


def _capable(
    candidates: Sequence[ModelProfile], request: RequestProfile, stats: Mapping[str, ModelStats]
) -> list[Choice]:
    return [
        Choice(e.model, f"capable: {e.model}, capability {e.capability}/10 at {_prices(e)}")
        for e in _most_capable_first(candidates)
    ]


def _auto(candidates: Sequence[ModelProfile], request: RequestProfile, stats: Mapping[str, ModelStats]) -> list[Choice]:
    ask = classify(request)
    label = f"{ask.kind} ask ({ask.reason})"
    ranked: list[ModelProfile]
    if ask.kind == "simple":
        ranked = [e for e, _ in _fastest_first(candidates, stats)]
        tier = "fast tier" if any(e.tier == "fast" for e in candidates) else "any tier (no fast-tier model connected)"
    elif ask.kind == "complex":
        ranked, tier = _in_tier(candidates, "capable", _most_capable_first)
    else:
        ranked, tier = _in_tier(candidates, "balanced", _cheapest_first)
    return [Choice(e.model, f"auto: {label} -> {tier} ({e.model})") for e in ranked]


# Orderings.


def _cheapest_first(entries: Sequence[ModelProfile]) -> list[ModelProfile]:
    return sorted(entries, key=lambda e: (e.blended_price, -e.capability, e.model))


def _most_capable_first(entries: Sequence[ModelProfile]) -> list[ModelProfile]:
    return sorted(entries, key=lambda e: (-e.capability, e.blended_price, e.model))


def _fastest_first(entries: Sequence[ModelProfile], stats: Mapping[str, ModelStats]) -> list[tuple[ModelProfile, str]]:
    """Measured models by observed latency, then the cheapest unmeasured fast-tier models."""
    measured = sorted(
        (e for e in entries if _unmeasured_because(stats.get(e.model)) is None),
        key=lambda e: (stats[e.model].latency_ms, e.blended_price, e.model),
    )
    ranked = [
        (e, f"{e.model} at {stats[e.model].latency_ms:.0f} ms observed (EWMA over {stats[e.model].calls} calls)")
        for e in measured
    ]
    # Unmeasured, only the fast tier is presumed fast, unless the account has no fast-tier model.
    any_fast = any(e.tier == "fast" for e in entries)
    rest = [e for e in entries if e not in measured and (e.tier == "fast" or not any_fast)]
    described = "cheapest fast-tier model" if any_fast else "cheapest model (no fast-tier model connected)"
    for e in _cheapest_first(rest):
        ranked.append((e, f"{described} {e.model} at {_prices(e)}, {_unmeasured_because(stats.get(e.model))}"))
    return ranked


def _unmeasured_because(measured: ModelStats | None) -> str | None:
    """Why a model's latency is not trusted yet, or None when it is."""
    if measured is None or measured.calls == 0:
        return "not measured yet"
    if measured.calls < FAST_MIN_CALLS:
        return f"only {measured.calls} calls measured"
    if measured.success_rate < FAST_MIN_SUCCESS_RATE or measured.latency_ms <= 0:
        return f"success rate {measured.success_rate:.0%}"
    return None


def _in_tier(
    entries: Sequence[ModelProfile],
    tier: Tier,
    order: Callable[[Sequence[ModelProfile]], list[ModelProfile]],
) -> tuple[list[ModelProfile], str]:
    pool, narrowed = _preferring(entries, lambda e: e.tier == tier)
    return order(pool), f"{tier} tier" if narrowed else f"any tier (no {tier}-tier model connected)"


def _preferring(
    entries: Sequence[ModelProfile], wanted: Callable[[ModelProfile], bool]
) -> tuple[list[ModelProfile], bool]:
    """The wanted entries, or all of them when none is wanted (a rule degrades, never fails)."""
    preferred = [e for e in entries if wanted(e)]
    return (preferred, True) if preferred else (list(entries), False)


def _prices(entry: ModelProfile) -> str:
    return f"${entry.input:g}/${entry.output:g} per 1M tokens" if entry.priced else "an unknown price"


def _fields_set(chat: ChatRequest) -> frozenset[str]:
    """The top-level fields a request sets, those OpenAI has and the canonical type does not name included."""
    named = (name for name in chat.__struct_fields__ if getattr(chat, name) is not None)
    return frozenset((*named, *(chat.passthrough or ())))
