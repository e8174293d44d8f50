"""Accounting settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from orqen_common.settings import (
    AccountingAddress,
    DatabaseSettings,
    EventConsumerSettings,
    NatsSettings,
    RedisSettings,
    ServiceSettings,
)


class AccountingSettings(
    ServiceSettings, AccountingAddress, DatabaseSettings, NatsSettings, EventConsumerSettings, RedisSettings
):
    """Configuration of the accounting service (ORQEN_* environment variables); it calls no other service.

    Redis is the shared API-key auth cache: revoking a key drops its entry there.
    """

    metrics_port: int = Field(9153, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    bootstrap_api_key: SecretStr | None = Field(
        None, description="An sk-orq- key to create, idempotently, at start (with its account)."
    )
    bootstrap_account: str = Field("default", description="Name of the account holding the bootstrap key.")
    ingest_batch: int = Field(500, description="Events written to Postgres per batch.")
    request_retention_days: int = Field(
        90, ge=0, description="Days raw request rows are kept (daily rollups are kept); 0 keeps them forever."
    )
    ingest_ack_wait_seconds: float = Field(
        30.0, description="How long a delivered, unacknowledged batch waits before NATS redelivers it."
    )
