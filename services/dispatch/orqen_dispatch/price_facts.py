"""A listed model's list prices and context window, from orqen_common.prices (genai-prices' bundled
data and the operator's ORQEN_PRICES_FILE): the same prices the request log is charged at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from orqen_common.prices import Prices


@dataclass(frozen=True, slots=True)
class PriceFacts:
    """USD per 1M tokens (the first tier of a tiered price; None when unpriced) and the context window."""

    input: float | None
    output: float | None
    cached_input: float | None
    context_window: int | None


def price_facts(prices: Prices, provider: str, model_id: str) -> PriceFacts:
    """What the price library and the operator's overrides say of `model_id` as `provider` lists it."""
    listed = prices.list_price(provider, model_id, datetime.now(UTC))
    window = prices.context_window(provider, model_id)
    if listed is None:
        return PriceFacts(None, None, None, window)
    return PriceFacts(float(listed.input), float(listed.output), float(listed.cached_input), window)
