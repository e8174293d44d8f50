"""Settings shared by every service, read once from ORQEN_* environment variables.

Each service composes the groups it needs into its own settings class and builds it
once in `main()`; nothing reads the environment at import time and no `.env` file
ever overrides the environment.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orqen_common.auth import API_KEY_PREFIX


class OrqenSettings(BaseSettings):
    """Base of every settings class: the ORQEN_ prefix, immutable, no .env file."""

    model_config = SettingsConfigDict(env_prefix="ORQEN_", env_file=None, extra="ignore", frozen=True)


class ServiceSettings(OrqenSettings):
    """What every process needs: logging, the internal token, metrics, shutdown and cache lifetimes.

    The gRPC addresses are not here: each service composes the address groups below for
    itself (it listens on the port of its own) and for the peers it calls, and no others.
    """

    env: Literal["production", "development"] = Field(
        "production",
        description="development accepts the well-known placeholder secrets of docker-compose.yml "
        "(`orqen up` and compose set it); production refuses them at start.",
    )
    internal_token: SecretStr = Field(
        description="Shared secret the services present to each other in gRPC metadata.",
    )
    log_level: str = Field("INFO", description="Log level of the service (DEBUG, INFO, WARNING, ERROR).")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log renderer; auto means JSON unless stderr is a terminal."
    )
    metrics_port: int = Field(0, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    grpc_host: str | None = Field(
        None,
        description="Interface a gRPC service listens on; unset: the host of its own address "
        "(ORQEN_<SERVICE>_ADDR), so a 127.0.0.1 address is reachable from this machine only. "
        "Containers set 0.0.0.0 (their address names the container or Service, not an interface).",
    )
    metrics_host: str | None = Field(
        None, description="Interface of the Prometheus metrics endpoint; unset: the gRPC service's."
    )
    grace_seconds: float = Field(10.0, description="How long shutdown waits for in-flight work.")
    auth_cache_ttl_seconds: int = Field(60, description="How long a verified API key stays cached in Redis.")
    auth_cache_stale_seconds: int = Field(
        3600,
        ge=0,
        description="How long past its TTL a cached key verdict still holds while accounting is unavailable "
        "(restarting); 0: never. A revoked key's entry is deleted at once, so this never revives one.",
    )
    account_config_ttl_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest an account's saved settings (credentials, routing preferences, toggles) stay cached "
        "when Redis cannot say whether they changed.",
    )

    @model_validator(mode="after")
    def _refuse_unusable_secrets(self) -> Self:
        problems = unusable_secrets(self, development=self.env == "development")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class OptimizerAddress(OrqenSettings):
    """Where the optimizer answers gRPC; the optimizer listens on its port."""

    optimizer_addr: str = Field("localhost:50051", description="host:port of the optimizer gRPC service.")


class DispatchAddress(OrqenSettings):
    """Where dispatch answers gRPC; dispatch listens on its port."""

    dispatch_addr: str = Field("localhost:50052", description="host:port of the dispatch gRPC service.")


class AccountingAddress(OrqenSettings):
    """Where accounting answers gRPC; accounting listens on its port."""

    accounting_addr: str = Field("localhost:50053", description="host:port of the accounting gRPC service.")


class BillingAddress(OrqenSettings):
    """Where billing answers gRPC; billing listens on its port."""

    billing_addr: str = Field("localhost:50054", description="host:port of the billing gRPC service.")


class RedisSettings(OrqenSettings):
    """Redis, for caches and counters only."""

    redis_url: str = Field("redis://localhost:6379/0", description="redis://host:port/db URL.")


class ToolLearningSettings(OrqenSettings):
    """Learning from the tools models call (orqen_common.tool_learning): accounting writes, the optimizer reads."""

    tool_learning: bool = Field(
        True,
        description="Learn, per account, which tools models call together and in sequence, and forward the "
        "likely ones beyond the router's K; off: nothing is learned (accounting) or used (optimizer).",
    )


class NatsSettings(OrqenSettings):
    """NATS JetStream, the event log between the request path and the records."""

    nats_url: str = Field("nats://localhost:4222", description="nats:// URL of the NATS server.")
    nats_prefix: str = Field(
        "orqen",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Prefix of subjects, stream and consumer names, so several stacks can share one server.",
    )


class EventConsumerSettings(OrqenSettings):
    """What a durable event consumer (accounting, billing) does with an event it cannot store."""

    event_max_deliveries: int = Field(
        5,
        ge=1,
        description="Deliveries of an event that fails to be stored before it is parked on the dead-letter subject.",
    )


class DatabaseSettings(OrqenSettings):
    """PostgreSQL, for durable records."""

    database_url: str = Field(
        "postgresql://postgres@localhost:5432/postgres",
        description="Plain postgresql:// URL; the driver is chosen inside.",
    )
    database_pool_size: int = Field(10, description="Maximum connections in the service's pool.")


def grpc_port(addr: str) -> int:
    """The port of a host:port address; a service listens on the port of its own address."""
    return int(addr.rsplit(":", 1)[1])


def grpc_host(addr: str) -> str:
    """The host of a host:port address (an IPv6 literal without its brackets)."""
    return addr.rsplit(":", 1)[0].removeprefix("[").removesuffix("]")


# --- secrets a service must not start with ------------------------------------------------

# Words that mark the example values shipped in docker-compose.yml and the Kubernetes base.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "placeholder")
DEVELOPMENT_HINT = "set a real secret (docs/operations.md), or ORQEN_ENV=development on a local stack"


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _token_problem(value: str, development: bool) -> str | None:
    if not value.strip():
        return "is empty"
    if _is_placeholder(value) and not development:
        return f"is a placeholder; {DEVELOPMENT_HINT}"
    return None


def _api_key_problem(value: str, development: bool) -> str | None:
    # A key without the prefix never authenticates: refused in every mode.
    if not value.startswith(API_KEY_PREFIX):
        return f"must start with {API_KEY_PREFIX} (no other key authenticates)"
    return _token_problem(value, development)


def _key_ring_problem(value: str, development: bool) -> str | None:
    if not value.strip():
        return "is empty (unset it to run without saved provider credentials)"
    if development:
        return None
    if _is_placeholder(value):
        return f"is a placeholder; {DEVELOPMENT_HINT}"
    for entry in value.split(","):
        key_id, _, encoded = entry.strip().partition(":")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            continue  # malformed: dispatch's key ring names the entry at start
        # The example key is 32 zero bytes; a key of one repeated byte is no secret at all.
        if len(set(key)) <= 1:
            return f"key {key_id!r} is one repeated byte (like the all-zero example key); {DEVELOPMENT_HINT}"
    return None


def _provider_key_problem(value: str, development: bool) -> str | None:
    # An empty provider key is a provider left unconfigured (compose passes them through unset).
    if _is_placeholder(value) and not development:
        return f"is a placeholder; {DEVELOPMENT_HINT}"
    return None


def _database_url_problem(value: str, development: bool) -> str | None:
    # Only the password is a secret: a URL without one (peer or certificate auth) is fine.
    password = urlsplit(value).password
    if password and _is_placeholder(password) and not development:
        return f"holds a placeholder password; {DEVELOPMENT_HINT}"
    return None


# The secrets a service may read, by settings field; each settings class checks those it has.
_SECRET_CHECKS: dict[str, Callable[[str, bool], str | None]] = {
    "internal_token": _token_problem,
    "bootstrap_api_key": _api_key_problem,
    "credentials_keys": _key_ring_problem,
    "database_url": _database_url_problem,
    "openai_api_key": _provider_key_problem,
    "anthropic_api_key": _provider_key_problem,
    "groq_api_key": _provider_key_problem,
}
# Secrets read from the variable their provider's own SDK reads, not from an ORQEN_ one.
_SDK_VARIABLES = {"openai_api_key", "anthropic_api_key", "groq_api_key"}


def _variable(field: str) -> str:
    return field.upper() if field in _SDK_VARIABLES else f"ORQEN_{field.upper()}"


def unusable_secrets(settings: BaseSettings, *, development: bool) -> list[str]:
    """Why the secrets in `settings` must not be used, one line each; empty when they may.

    Empty values (provider keys aside) and a bootstrap key without the sk-orq- prefix are refused
    in every mode; the well-known placeholders (in a database URL, its password) only outside development.
    """
    problems = []
    for name, check in _SECRET_CHECKS.items():
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and (problem := check(value, development)):
            problems.append(f"{_variable(name)} {problem}")
    return problems


def secret_is_usable(name: str, value: str, *, development: bool = False) -> bool:
    """Whether a service accepts `value` for the secret setting `name` (e.g. ORQEN_INTERNAL_TOKEN).

    deploy/check.py uses it: the Kubernetes manifests ship no value production would accept, and
    docker compose's development defaults are accepted.
    """
    check = _SECRET_CHECKS[name.removeprefix("ORQEN_").lower()]  # OPENAI_API_KEY: openai_api_key
    return check(value, development) is None


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """A service's settings, read once at start; invalid ones end the process with one clear line per error."""
    try:
        return settings_class()
    except ValidationError as err:
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in err.errors()]
        # `from None`: pydantic's own report would repeat the offending values, secrets among them.
        raise SystemExit(
            f"refusing to start: invalid configuration ({settings_class.__name__})\n" + "\n".join(lines)
        ) from None
