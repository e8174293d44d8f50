"""Dispatch settings: upstream base URLs follow each official SDK's own convention."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from orqen_common.settings import RedisSettings, ServiceSettings


class DispatchSettings(ServiceSettings, RedisSettings):
    """Configuration of the dispatch service."""

    metrics_port: int = Field(9152, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible base URL including /v1, as the OpenAI SDK's base_url.",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "ORQEN_OPENAI_API_KEY"),
        description="Operator key for OpenAI (OPENAI_API_KEY).",
    )
    upstream_connect_timeout_seconds: float = Field(10.0, description="Connect timeout to a provider.")
    upstream_timeout_seconds: float = Field(600.0, description="Read timeout of one provider response.")
