"""Accounting settings."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, SecretStr, field_validator

from orqen_accounting.owners import checked_email, checked_password
from orqen_common.errors import OrqenError
from orqen_common.prices import PriceSettings
from orqen_common.settings import (
    AccountingAddress,
    DatabaseSettings,
    EventConsumerSettings,
    NatsSettings,
    RedisSettings,
    ServiceSettings,
    ToolLearningSettings,
)

# The longest budget period (a month) and a day's margin: a budget's use is summed from raw rows.
MIN_RETENTION_DAYS = 32


class AccountingSettings(
    ServiceSettings,
    AccountingAddress,
    DatabaseSettings,
    NatsSettings,
    EventConsumerSettings,
    RedisSettings,
    PriceSettings,
    ToolLearningSettings,
):
    """Configuration of the accounting service (ORQEN_* environment variables); it calls no other service.

    Redis is the shared API-key auth cache: revoking a key drops its entry there; and where the tools
    models call are learned (orqen_accounting.tool_learning).
    """

    metrics_port: int = Field(9153, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    bootstrap_api_key: SecretStr | None = Field(
        None, description="An sk-orq- key to create, idempotently, at start (with its account)."
    )
    bootstrap_account: str = Field("default", description="Name of the account holding the bootstrap key.")
    bootstrap_owner_email: str | None = Field(
        None, description="Email of a dashboard owner of the bootstrap account to create, idempotently, at start."
    )
    bootstrap_owner_password: SecretStr | None = Field(
        None,
        description="Password of that owner, set when it is created (an existing owner keeps its own password).",
    )
    ingest_batch: int = Field(500, description="Events written to Postgres per batch.")
    request_retention_days: int = Field(
        90,
        ge=0,
        description="Days raw request rows are kept (daily rollups are kept); 0 keeps them forever. At least "
        f"{MIN_RETENTION_DAYS}: a monthly budget's use is summed from the raw rows of its month.",
    )
    ingest_ack_wait_seconds: float = Field(
        30.0, description="How long a delivered, unacknowledged batch waits before NATS redelivers it."
    )

    @field_validator("request_retention_days")
    @classmethod
    def _a_budget_period_at_least(cls, value: int) -> int:
        if 0 < value < MIN_RETENTION_DAYS:
            raise ValueError(
                f"must be 0 (keep everything) or at least {MIN_RETENTION_DAYS} days: budgets are summed "
                "from the raw rows of their period, and the longest period is a month"
            )
        return value

    @field_validator("bootstrap_owner_email")
    @classmethod
    def _an_email(cls, value: str | None) -> str | None:
        return None if value is None else _owner_field(checked_email, value)

    @field_validator("bootstrap_owner_password")
    @classmethod
    def _a_password(cls, value: SecretStr | None) -> SecretStr | None:
        # The owner is created with the same rules as `orqen owners create`: refused at start, not at login.
        if value is not None:
            _owner_field(checked_password, value.get_secret_value())
        return value


def _owner_field(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except OrqenError as err:
        raise ValueError(err.message) from None
