"""Dispatch settings: upstream base URLs follow each official SDK's own convention.

`ORQEN_OPENAI_BASE_URL` and `ORQEN_GROQ_BASE_URL` include `/v1` (the OpenAI SDK's
`base_url`), `ORQEN_ANTHROPIC_BASE_URL` does not (the Anthropic SDK's), and
`ORQEN_BEDROCK_ENDPOINT_URL` is what boto3 calls `endpoint_url`. Operator keys come from
the variables each SDK reads itself.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator

from orqen_common.deployments import DEFAULT_STRATEGY, BalancedModel, Deployment, checked_model
from orqen_common.errors import OrqenError
from orqen_common.prices import PriceSettings
from orqen_common.proxy_families import BY_NAME
from orqen_common.settings import AccountingAddress, DispatchAddress, RedisSettings, ServiceSettings
from orqen_dispatch.balancer import EjectionPolicy
from orqen_dispatch.model_profiles import ModelOverride
from orqen_dispatch.resilience import ResilienceSettings
from orqen_dispatch.response_cache import ResponseCacheSettings


class CompatibleProvider(BaseModel):
    """An operator-defined OpenAI-compatible provider, addressed as `<name>/<model>`."""

    base_url: str
    api_key_env: str | None = None
    families: list[str] | None = Field(
        None, description='The proxy families it serves ("embeddings", "rerank", ...); unset: all of them.'
    )

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown proxy families {unknown}; known: {sorted(BY_NAME)}")
        return value


class OperatorDeployment(BaseModel, extra="forbid"):
    """One deployment of an operator's load-balanced model (see orqen_common.deployments.Deployment)."""

    name: str
    provider: str
    model: str = ""
    region: str = ""
    weight: int = 1
    rpm: int = 0
    tpm: int = 0


class OperatorBalancedModel(BaseModel, extra="forbid"):
    """An operator's load-balanced model: its strategy and deployments."""

    strategy: str = DEFAULT_STRATEGY
    deployments: list[OperatorDeployment]


class DispatchSettings(
    ServiceSettings,
    DispatchAddress,
    AccountingAddress,
    RedisSettings,
    ResilienceSettings,
    PriceSettings,
    ResponseCacheSettings,
):
    """Configuration of the dispatch service; it calls accounting (API keys, credentials, preferences)."""

    metrics_port: int = Field(9152, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible base URL including /v1, as the OpenAI SDK's base_url.",
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "ORQEN_OPENAI_API_KEY"), description="OPENAI_API_KEY."
    )
    anthropic_base_url: str = Field(
        "https://api.anthropic.com", description="Anthropic base URL without /v1, as the Anthropic SDK's base_url."
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "ORQEN_ANTHROPIC_API_KEY"),
        description="ANTHROPIC_API_KEY.",
    )
    anthropic_default_max_tokens: int = Field(
        4096, description="max_tokens sent to Anthropic when the caller gave none (the API requires it)."
    )
    groq_base_url: str = Field("https://api.groq.com/openai/v1", description="Groq's OpenAI-compatible base URL.")
    groq_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GROQ_API_KEY", "ORQEN_GROQ_API_KEY"), description="GROQ_API_KEY."
    )
    bedrock_endpoint_url: str | None = Field(
        None, description="Bedrock runtime endpoint (boto3's endpoint_url); default is the region's."
    )
    aws_region: str = Field(
        "us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "ORQEN_AWS_REGION"),
        description="AWS_REGION (or AWS_DEFAULT_REGION) of Bedrock.",
    )
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID"), description="AWS_ACCESS_KEY_ID for Bedrock SigV4."
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY"), description="AWS_SECRET_ACCESS_KEY."
    )
    aws_session_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_SESSION_TOKEN"), description="AWS_SESSION_TOKEN (temporary keys)."
    )
    aws_bearer_token_bedrock: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("AWS_BEARER_TOKEN_BEDROCK"),
        description="A Bedrock API key, used instead of SigV4 when set.",
    )
    compatible_providers: dict[str, CompatibleProvider] = Field(
        default_factory=dict,
        description=(
            'More OpenAI-compatible providers as JSON: {"name": {"base_url": …, "api_key_env": …, "families": […]}}.'
        ),
    )
    model_deployments: dict[str, OperatorBalancedModel] = Field(
        default_factory=dict,
        description=(
            "Load-balanced models for every account, as JSON: "
            '{"model": {"strategy": "weighted", "deployments": [{"name": …, "provider": …, "weight": 1}]}}.'
        ),
    )
    deployment_eject_base_seconds: float = Field(
        5.0, gt=0, description="Cooling period of a deployment after its first failure; doubles per failed probe."
    )
    deployment_eject_max_seconds: float = Field(
        300.0, gt=0, description="The longest cooling period of a failing deployment."
    )
    credentials_keys: SecretStr | None = Field(
        None,
        description='AES-256-GCM keys sealing saved provider credentials, "id:base64(32 bytes)", newest first.',
    )
    allow_private_base_urls: bool = Field(
        False,
        description="Let accounts save OpenAI-compatible base URLs on private, loopback or link-local addresses.",
    )
    default_provider: str = Field("openai", description="Provider of model names no rule recognises.")
    bedrock_control_endpoint_url: str | None = Field(
        None, description="Bedrock control-plane endpoint (model lists); default is the region's bedrock endpoint."
    )
    model_list_ttl_seconds: float = Field(
        600.0, gt=0, description="How long a provider's model list is served before it is refreshed in the background."
    )
    model_list_retry_seconds: float = Field(
        30.0, gt=0, description="After a provider's model list failed, how long until it is asked again."
    )
    model_list_keep_seconds: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="How long the last good copy of a model list is kept to serve when a provider fails.",
    )
    model_list_timeout_seconds: float = Field(10.0, gt=0, description="How long one provider's model list may take.")
    model_overrides: dict[str, ModelOverride] = Field(
        default_factory=dict,
        description=(
            'Per-model settings as JSON, by model string or provider model id: {"my/llama": {"tier": "fast", '
            '"capability": 4, "tools": true, "vision": false, "context_window": 32768, "max_output_tokens": 4096}}; '
            "every field optional (prices: ORQEN_PRICES_FILE)."
        ),
    )
    upstream_connect_timeout_seconds: float = Field(10.0, description="Connect timeout to a provider.")
    upstream_timeout_seconds: float = Field(600.0, description="Read timeout of one provider response.")

    @field_validator("model_deployments")
    @classmethod
    def _valid_deployments(cls, value: dict[str, OperatorBalancedModel]) -> dict[str, OperatorBalancedModel]:
        for model in value:
            cls._balanced(model, value[model])  # raises with the field at fault
        return value

    def balanced_models(self) -> dict[str, BalancedModel]:
        """ORQEN_MODEL_DEPLOYMENTS, checked by the rules accounts' deployments follow."""
        return {model: self._balanced(model, spec) for model, spec in self.model_deployments.items()}

    def ejection_policy(self) -> EjectionPolicy:
        return EjectionPolicy(self.deployment_eject_base_seconds, self.deployment_eject_max_seconds)

    @staticmethod
    def _balanced(model: str, spec: OperatorBalancedModel) -> BalancedModel:
        try:
            return checked_model(model, spec.strategy, (Deployment(**d.model_dump()) for d in spec.deployments))
        except OrqenError as err:
            raise ValueError(f"model {model!r}: {err}") from None


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None
