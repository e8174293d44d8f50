"""What routing knows of each listed model: its capabilities, rank and prices, and where each came from.

Tool calling, vision, context window and output limit come from the provider's list where it
says so, else from the price library's metadata, else from the operator's configuration
(`ORQEN_MODEL_OVERRIDES`), else from the family table below. Prices are orqen_common.prices'
(the price library and ORQEN_PRICES_FILE), the ones the request log is charged at. The tier and capability rank
that orqen/cheap|fast|capable|auto order by are Orqen's own judgement, which no provider
list gives: the family table, matched by model-name patterns (first match wins), with a
middling default for models it does not know; the configuration overrides both per model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orqen_dispatch.price_facts import PriceFacts
from orqen_dispatch.providers.model_lists import ListedModel

Tier = Literal["fast", "balanced", "capable"]
Source = Literal["provider", "prices", "config", "default"]

# Sampling and length fields the OpenAI reasoning models (o-series, gpt-5) reject.
_REASONING_REFUSES = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias",
     "max_tokens", "stop"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Family:
    """Orqen's judgement of a model family: its tier, rank (1-10) and what it can do by default."""

    pattern: str
    tier: Tier
    capability: int
    tools: bool = True
    vision: bool = False
    refuses: frozenset[str] = frozenset()


# Searched in the provider's model id (so "us.anthropic.claude-3-5-haiku…" is a Claude Haiku).
# Order matters: the narrower pattern of a family comes before the wider one.
FAMILIES: tuple[Family, ...] = (
    Family(r"gpt-5(\.\d+)?-nano", "balanced", 5, vision=True, refuses=_REASONING_REFUSES),
    Family(r"gpt-5(\.\d+)?-mini", "balanced", 7, vision=True, refuses=_REASONING_REFUSES),
    Family(r"gpt-5", "capable", 9, vision=True, refuses=_REASONING_REFUSES),
    Family(r"gpt-4\.1-nano", "fast", 4, vision=True),
    Family(r"gpt-4\.1-mini", "fast", 6, vision=True),
    Family(r"gpt-4\.1", "balanced", 7, vision=True),
    Family(r"gpt-4o-mini", "fast", 5, vision=True),
    Family(r"gpt-4o|chatgpt-4o", "balanced", 7, vision=True),
    Family(r"gpt-4", "balanced", 6),
    Family(r"gpt-3\.5", "fast", 3),
    Family(r"^o\d+-mini", "balanced", 7, refuses=_REASONING_REFUSES),
    Family(r"^o\d+", "capable", 9, vision=True, refuses=_REASONING_REFUSES),
    Family(r"claude-3-haiku", "fast", 4, vision=True),
    Family(r"claude-3-5-haiku", "fast", 5),
    Family(r"claude-.*haiku", "fast", 7, vision=True),
    Family(r"claude-3(-5|-7)?-sonnet", "balanced", 7, vision=True),
    Family(r"claude-.*sonnet", "capable", 9, vision=True),
    Family(r"claude-3-opus", "capable", 8, vision=True),
    Family(r"claude-.*opus", "capable", 10, vision=True),
    Family(r"claude", "balanced", 6, vision=True),
    Family(r"nova-micro", "fast", 3),
    Family(r"nova-lite", "fast", 4, vision=True),
    Family(r"nova-pro", "balanced", 6, vision=True),
    Family(r"nova-premier", "capable", 8, vision=True),
    Family(r"llama.*\b(1|3|8)b", "fast", 3),
    Family(r"llama.*\b(405|400)b|llama-?4.*maverick", "capable", 7, vision=True),
    Family(r"llama.*\b(70|90)b|llama-?4", "balanced", 6),
    Family(r"deepseek-?r1|qwen.*(235b|qwq)|kimi-k2|gpt-oss-120b", "capable", 8),
    Family(r"mistral-large|qwen.*(32b|72b)|gpt-oss|deepseek", "balanced", 7),
    Family(r"mi[sx]tral|gemma|phi-|qwen", "fast", 4),
)
DEFAULT_FAMILY = Family(r"", "balanced", 5)
_COMPILED = tuple((re.compile(f.pattern, re.IGNORECASE), f) for f in FAMILIES)


@functools.lru_cache(maxsize=4096)
def family_of(model_id: str) -> Family:
    """The first family whose pattern the provider's model id contains; DEFAULT_FAMILY otherwise."""
    return next((family for pattern, family in _COMPILED if pattern.search(model_id)), DEFAULT_FAMILY)


class ModelOverride(BaseModel):
    """The operator's word on one model (ORQEN_MODEL_OVERRIDES); fields left unset are not overridden."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: Tier | None = None
    capability: int | None = Field(None, ge=1, le=10)
    tools: bool | None = None
    vision: bool | None = None
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One listed model as a caller addresses it, with what routing and GET /v1/models show of it."""

    model: str  # the model string a caller sends: "gpt-4o", "groq/llama-3.1-8b-instant"
    provider: str
    tier: Tier
    capability: int
    input: float  # USD per 1M tokens; 0 when not priced
    output: float
    cached_input_price: float
    kind: str = "chat"
    context_window: int = 0  # 0: not known
    max_output_tokens: int = 0
    tools: bool = True
    vision: bool = False
    refuses: frozenset[str] = frozenset()
    legacy: bool = False
    priced: bool = True
    created: int = 0
    listed_at: int = 0
    sources: str = ""  # where each capability came from: "tools=provider vision=default …"

    @property
    def blended_price(self) -> float:
        """One comparable price per 1M tokens (input weighted 3:1); an unpriced model sorts after every priced one."""
        return (self.input * 3 + self.output) / 4 if self.priced else float("inf")


def profile(
    model: str,
    provider: str,
    listed: ListedModel,
    listed_at: int,
    prices: PriceFacts,
    override: ModelOverride | None,
) -> ModelProfile:
    """What is known of `listed`, each capability from the first source that says."""
    family = family_of(listed.id)
    wish = override or ModelOverride()
    sources: list[str] = []

    def pick(name: str, candidates: Collection[tuple[Source, object]]) -> object:
        source, value = next((s, v) for s, v in candidates if v is not None)
        sources.append(f"{name}={source}")
        return value

    tools = pick("tools", (("provider", listed.tools), ("config", wish.tools), ("default", family.tools)))
    vision = pick("vision", (("provider", listed.vision), ("config", wish.vision), ("default", family.vision)))
    window = pick(
        "context_window",
        (
            ("provider", listed.context_window),
            ("prices", prices.context_window),
            ("config", wish.context_window),
            ("default", 0),
        ),
    )
    output = pick(
        "max_output_tokens",
        (("provider", listed.max_output_tokens), ("config", wish.max_output_tokens), ("default", 0)),
    )
    priced = prices.input is not None
    return ModelProfile(
        model=model,
        provider=provider,
        kind=listed.kind,
        tier=wish.tier or family.tier,
        capability=wish.capability or family.capability,
        context_window=int(window),  # type: ignore[call-overload]
        max_output_tokens=int(output),  # type: ignore[call-overload]
        tools=bool(tools),
        vision=bool(vision),
        refuses=family.refuses,
        legacy=listed.legacy,
        input=prices.input or 0.0,
        output=prices.output or 0.0,
        cached_input_price=prices.cached_input or 0.0,
        priced=priced,
        created=listed.created,
        listed_at=listed_at,
        sources=" ".join(sources),
    )
