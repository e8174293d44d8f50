"""Billing settings, including the plan catalogue."""

from __future__ import annotations

from pydantic import BaseModel, Field

from orqen_common.settings import DatabaseSettings, NatsSettings, RedisSettings, ServiceSettings


class Plan(BaseModel):
    """A subscription tier: a monthly base price, included tokens, and the overage rate."""

    base_cents: int
    included_tokens: int
    overage_cents_per_million: int


def default_plans() -> dict[str, Plan]:
    return {
        "free": Plan(base_cents=0, included_tokens=1_000_000, overage_cents_per_million=0),
        "pro": Plan(base_cents=4900, included_tokens=20_000_000, overage_cents_per_million=200),
    }


class BillingSettings(ServiceSettings, DatabaseSettings, NatsSettings, RedisSettings):
    """Configuration of the billing service."""

    metrics_port: int = Field(9154, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    plans: dict[str, Plan] = Field(
        default_factory=default_plans,
        description="Plan catalogue as JSON (ORQEN_PLANS), keyed by tier; must contain 'free'.",
    )
    currency: str = Field("usd", description="Currency of all prices.")
