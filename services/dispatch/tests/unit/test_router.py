"""Model strings pick the provider their rule names, and the model that provider expects."""

import pytest

from orqen_common.errors import OrqenError
from orqen_dispatch.router import ProviderRouter


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


ROUTER = ProviderRouter(
    {name: Named(name) for name in ("openai", "anthropic", "bedrock", "groq", "together")},  # type: ignore[misc]
    "openai",
)


@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("o1-preview", "openai", "o1-preview"),
        ("o3-mini", "openai", "o3-mini"),
        ("chatgpt-4o-latest", "openai", "chatgpt-4o-latest"),
        ("claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6"),
        ("anthropic/claude-3-5-haiku-latest", "anthropic", "claude-3-5-haiku-latest"),
        ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", "bedrock", "anthropic.claude-3-haiku-20240307-v1:0"),
        (
            "bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku",
            "bedrock",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku",
        ),
        ("groq/llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile"),
        ("together/meta-llama/Llama-3-70b", "together", "meta-llama/Llama-3-70b"),
        ("openai/gpt-4.1", "openai", "gpt-4.1"),
        ("llama3:8b", "openai", "llama3:8b"),
        ("unknown-vendor/model", "openai", "unknown-vendor/model"),
    ],
)
def test_model_strings_pick_their_provider(model: str, provider: str, upstream_model: str) -> None:
    chosen, name = ROUTER.resolve(model)
    assert (chosen.name, name) == (provider, upstream_model)


def test_a_provider_prefix_without_a_model_is_a_400() -> None:
    with pytest.raises(OrqenError, match="no model") as err:
        ROUTER.resolve("groq/")
    assert err.value.http_status == 400


def test_the_default_provider_must_exist() -> None:
    with pytest.raises(ValueError, match="default provider"):
        ProviderRouter({}, "openai")
