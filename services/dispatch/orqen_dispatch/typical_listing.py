"""A typical account's model listing, profiled as dispatch profiles a live list.

The orqen/* rules are evaluated against it where no provider answers: the rules' unit tests and
orqen/auto's cost figures in `make bench-optimizer`. The ids are ones the providers list today;
their capabilities and prices come from the family table and the price library, as in service.
"""

from __future__ import annotations

from orqen_common.prices import Prices
from orqen_dispatch.model_profiles import ModelProfile, profile
from orqen_dispatch.price_facts import price_facts
from orqen_dispatch.providers.model_lists import ListedModel, kind_by_name

TYPICAL_LISTING: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
               "o3-mini", "o4-mini", "text-embedding-3-small", "dall-e-3", "whisper-1", "omni-moderation-latest"),
    "anthropic": ("claude-opus-4-5", "claude-sonnet-4-6", "claude-sonnet-4-5", "claude-haiku-4-5",
                  "claude-3-5-haiku-20241022"),
    "bedrock": ("anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0",
                "amazon.nova-pro-v1:0", "meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0"),
    "groq": ("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
}  # fmt: skip

# The router sends these providers' models by their bare names; the others as <provider>/<id>.
_BARE = {"openai", "anthropic"}


def typical_profiles(prices: Prices) -> list[ModelProfile]:
    """TYPICAL_LISTING's models, every kind, as the orqen/* rules see them."""
    return [
        profile(
            model_id if provider in _BARE else f"{provider}/{model_id}",
            provider,
            ListedModel(
                id=model_id,
                kind=kind_by_name(model_id),
                vision=False if provider == "bedrock" and "llama" in model_id else None,
            ),
            0,
            price_facts(prices, provider, model_id),
            None,
        )
        for provider, ids in TYPICAL_LISTING.items()
        for model_id in ids
    ]
