"""Settings shared by every service, read once from ORQEN_* environment variables.

Each service composes the groups it needs into its own settings class and builds it
once in `main()`; nothing reads the environment at import time and no `.env` file
ever overrides the environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrqenSettings(BaseSettings):
    """Base of every settings class: the ORQEN_ prefix, immutable, no .env file."""

    model_config = SettingsConfigDict(env_prefix="ORQEN_", env_file=None, extra="ignore", frozen=True)


class ServiceSettings(OrqenSettings):
    """What every process needs: logging, the internal token, metrics, shutdown and cache lifetimes.

    The gRPC addresses are not here: each service composes the address groups below for
    itself (it listens on the port of its own) and for the peers it calls, and no others.
    """

    internal_token: SecretStr = Field(
        description="Shared secret the services present to each other in gRPC metadata.",
    )
    log_level: str = Field("INFO", description="Log level of the service (DEBUG, INFO, WARNING, ERROR).")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log renderer; auto means JSON unless stderr is a terminal."
    )
    metrics_port: int = Field(0, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    grace_seconds: float = Field(10.0, description="How long shutdown waits for in-flight work.")
    auth_cache_ttl_seconds: int = Field(60, description="How long a verified API key stays cached in Redis.")
    account_config_ttl_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest an account's saved settings (credentials, routing preferences, toggles) stay cached "
        "when Redis cannot say whether they changed.",
    )


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
