"""Model string -> provider translator and the model name that provider expects.

Rules, first match wins:
1. `<provider>/<model>` where <provider> is configured (openai, anthropic, bedrock, groq, or an
   operator-defined OpenAI-compatible entry), or is an OpenAI-compatible provider the account
   saved a credential (with its base URL) for: that provider, with the rest as its model.
2. A bare model name by family: `claude-*` -> anthropic; `gpt-*`, `o1…`, `o3…`, `o4…`,
   `chatgpt-*`, `text-embedding-*`… -> openai.
3. Anything else -> the default provider (OpenAI-compatible).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from orqen_common.errors import invalid_request
from orqen_dispatch.providers.base import Provider

_FAMILIES = (
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^(gpt-|chatgpt-|o\d|text-|davinci|babbage|omni-|dall-e|whisper|tts-)"), "openai"),
)


class ProviderRouter:
    def __init__(
        self, providers: dict[str, Provider], default: str, compatible: Callable[[str], Provider] | None = None
    ) -> None:
        """`compatible(name)` builds the translator of an account's own OpenAI-compatible provider."""
        if default not in providers:
            raise ValueError(f"default provider {default!r} is not one of {sorted(providers)}")
        self._providers = providers
        self._default = default
        self._compatible = compatible
        self._accounts_providers: dict[str, Provider] = {}

    @property
    def default(self) -> Provider:
        """The provider of model names no rule recognises (and of calls that name no model)."""
        return self._providers[self._default]

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    def resolve(self, model: str, account_providers: Collection[str] = ()) -> tuple[Provider, str]:
        """The translator and model name for `model`; `account_providers` are those the account saved."""
        prefix, sep, rest = model.partition("/")
        if sep and (prefix in self._providers or (prefix in account_providers and self._compatible)):
            if not rest:
                raise invalid_request(f"Model {model!r} names the provider {prefix!r} but no model.")
            return self._provider(prefix), rest
        for pattern, name in _FAMILIES:
            if pattern.match(model) and name in self._providers:
                return self._providers[name], model
        return self._providers[self._default], model

    def named(self, name: str, account_providers: Collection[str] = ()) -> Provider | None:
        """The translator called `name` (configured, or an OpenAI-compatible one the account saved), or None."""
        if name in self._providers or (name in account_providers and self._compatible):
            return self._provider(name)
        return None

    def _provider(self, name: str) -> Provider:
        if name in self._providers:
            return self._providers[name]
        provider = self._accounts_providers.get(name)
        if provider is None and self._compatible is not None:
            # The translator holds no secret or URL of its own: both come with each call's credentials.
            provider = self._accounts_providers[name] = self._compatible(name)
        assert provider is not None
        return provider
