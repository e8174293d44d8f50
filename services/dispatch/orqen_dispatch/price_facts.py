"""A listed model's list prices and context window, from the price library (genai-prices).

The one place dispatch reads genai-prices: its bundled data only (never its UpdatePrices), so it
works offline and answers the same on every replica.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price

# Orqen's provider names -> the price library's provider ids. Other providers (an operator's or
# an account's OpenAI-compatible endpoint) are matched by model name across every provider.
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "bedrock": "aws", "groq": "groq"}
# Prices are asked for a small call and scaled, so a long-context tier never applies.
_PROBE_TOKENS = 1000
_PER_MILLION = Decimal(1_000_000 // _PROBE_TOKENS)


@dataclass(frozen=True, slots=True)
class PriceFacts:
    """USD per 1M tokens (None where the library has no price) and the context window it gives."""

    input: float | None
    output: float | None
    cached_input: float | None
    context_window: int | None


@functools.lru_cache(maxsize=8192)
def price_facts(provider: str, model_id: str) -> PriceFacts | None:
    """What the price library knows of `model_id` as `provider` lists it; None when it does not know it."""
    provider_id = _PROVIDER_IDS.get(provider)
    try:
        plain = calc_price(
            Usage(input_tokens=_PROBE_TOKENS, output_tokens=_PROBE_TOKENS), model_id, provider_id=provider_id
        )
        cached = calc_price(
            Usage(input_tokens=_PROBE_TOKENS, cache_read_tokens=_PROBE_TOKENS), model_id, provider_id=provider_id
        )
    except LookupError:
        return None
    model_price = plain.model_price
    return PriceFacts(
        input=_per_million(plain.input_price) if getattr(model_price, "input_mtok", None) is not None else None,
        output=_per_million(plain.output_price) if getattr(model_price, "output_mtok", None) is not None else None,
        cached_input=(
            _per_million(cached.input_price) if getattr(model_price, "cache_read_mtok", None) is not None else None
        ),
        context_window=plain.model.context_window,
    )


def _per_million(price: Decimal) -> float:
    return float(price * _PER_MILLION)
