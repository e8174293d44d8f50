"""Model string -> provider translator and the model name that provider expects.

Rules, first match wins:
1. `<provider>/<model>` where <provider> is configured (openai, anthropic, bedrock, groq, or an
   operator-defined OpenAI-compatible entry): that provider, with the rest as its model.
2. A bare model name by family: `claude-*` -> anthropic; `gpt-*`, `o1…`, `o3…`, `o4…`,
   `chatgpt-*`, `text-embedding-*`… -> openai.
3. Anything else -> the default provider (OpenAI-compatible).
"""

from __future__ import annotations

import re

from orqen_common.errors import invalid_request
from orqen_dispatch.providers.base import Provider

_FAMILIES = (
    (re.compile(r"^claude-"), "anthropic"),
    (re.compile(r"^(gpt-|chatgpt-|o\d|text-|davinci|babbage|omni-|dall-e|whisper|tts-)"), "openai"),
)


class ProviderRouter:
    def __init__(self, providers: dict[str, Provider], default: str) -> None:
        if default not in providers:
            raise ValueError(f"default provider {default!r} is not one of {sorted(providers)}")
        self._providers = providers
        self._default = default

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    def resolve(self, model: str) -> tuple[Provider, str]:
        prefix, sep, rest = model.partition("/")
        if sep and prefix in self._providers:
            if not rest:
                raise invalid_request(f"Model {model!r} names the provider {prefix!r} but no model.")
            return self._providers[prefix], rest
        for pattern, name in _FAMILIES:
            if pattern.match(model) and name in self._providers:
                return self._providers[name], model
        return self._providers[self._default], model
