"""Billing settings: the plan catalogue and Stripe."""

from __future__ import annotations

from typing import Self

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator

from orqen_common.settings import (
    AccountingAddress,
    BillingAddress,
    DatabaseSettings,
    EventConsumerSettings,
    NatsSettings,
    RedisSettings,
    ServiceSettings,
)

FREE_TIER = "free"
# The tier Checkout upgrades to.
UPGRADE_TIER = "pro"


class Plan(BaseModel):
    """A subscription tier: a monthly base price, included tokens, and the overage rate."""

    base_cents: int = Field(ge=0)
    included_tokens: int = Field(ge=0)
    overage_cents_per_million: int = Field(ge=0)
    stripe_price_id: str = Field("", description="The Stripe Price a subscription to this tier is billed with.")


def default_plans() -> dict[str, Plan]:
    return {
        FREE_TIER: Plan(base_cents=0, included_tokens=1_000_000, overage_cents_per_million=0),
        UPGRADE_TIER: Plan(base_cents=4900, included_tokens=20_000_000, overage_cents_per_million=200),
    }


class BillingSettings(
    ServiceSettings,
    BillingAddress,
    AccountingAddress,
    DatabaseSettings,
    NatsSettings,
    EventConsumerSettings,
    RedisSettings,
):
    """Configuration of the billing service; it calls accounting (API keys)."""

    metrics_port: int = Field(9154, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    plans: dict[str, Plan] = Field(
        default_factory=default_plans,
        description="Plan catalogue as JSON (ORQEN_PLANS), keyed by tier; must contain 'free' and 'pro'.",
    )
    currency: str = Field("usd", description="Currency of all prices.")
    stripe_secret_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("STRIPE_SECRET_KEY", "ORQEN_STRIPE_SECRET_KEY"),
        description="STRIPE_SECRET_KEY; unset: local mode (tiers and projected charge, no Stripe endpoints).",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "ORQEN_STRIPE_WEBHOOK_SECRET"),
        description="STRIPE_WEBHOOK_SECRET (whsec_…) that webhook signatures are checked against.",
    )
    stripe_api_base: str = Field("https://api.stripe.com", description="Base URL of the Stripe API.")
    stripe_webhook_tolerance_seconds: int = Field(
        300, ge=1, description="Webhook signatures older than this are refused as stale (replay protection)."
    )
    dashboard_url: str = Field(
        "http://localhost:8080/dashboard",
        description="Where Stripe sends the browser back after Checkout and the customer portal.",
    )

    @model_validator(mode="after")
    def _plans_are_usable(self) -> Self:
        missing = {FREE_TIER, UPGRADE_TIER} - set(self.plans)
        if missing:
            raise ValueError(f"ORQEN_PLANS must define {', '.join(sorted(missing))}")
        if self.stripe_enabled and not self.plans[UPGRADE_TIER].stripe_price_id:
            raise ValueError("with STRIPE_SECRET_KEY set, ORQEN_PLANS must give the 'pro' plan a stripe_price_id")
        return self

    @property
    def stripe_enabled(self) -> bool:
        """False in local mode (STRIPE_SECRET_KEY unset or empty)."""
        return _is_set(self.stripe_secret_key)

    @property
    def webhooks_enabled(self) -> bool:
        return self.stripe_enabled and _is_set(self.stripe_webhook_secret)

    def tier_of_price(self, price_id: str) -> str | None:
        """The tier billed with this Stripe Price, if any."""
        return next((tier for tier, plan in self.plans.items() if price_id and plan.stripe_price_id == price_id), None)


def _is_set(secret: SecretStr | None) -> bool:
    """Set and not empty: compose files pass unset variables as empty strings."""
    return secret is not None and bool(secret.get_secret_value())
