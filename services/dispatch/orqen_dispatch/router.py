"""Model string -> provider adapter and the model name the provider expects."""

from __future__ import annotations

from orqen_dispatch.providers.base import Provider


class ProviderRouter:
    """Resolves a model string to a provider.

    `provider/model` strings name a configured provider explicitly; bare model names
    go to the default OpenAI-compatible provider.
    """

    def __init__(self, providers: dict[str, Provider], default: str) -> None:
        self._providers = providers
        self._default = default

    def resolve(self, model: str) -> tuple[Provider, str]:
        prefix, sep, rest = model.partition("/")
        if sep and prefix in self._providers:
            return self._providers[prefix], rest
        return self._providers[self._default], model
