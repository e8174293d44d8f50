"""The plan catalogue's checks and how Stripe objects of either API era are read."""

import pytest
from pydantic import SecretStr, ValidationError

from orqen_billing.settings import BillingSettings, Plan
from orqen_billing.subscriptions import SubscriptionSnapshot, invoice_subscription

PRO = Plan(base_cents=4900, included_tokens=10, overage_cents_per_million=1, stripe_price_id="price_pro")
FREE = Plan(base_cents=0, included_tokens=1, overage_cents_per_million=0)
ACCOUNT = "5f0a4b3e-8e6e-4c1e-9a51-2f3f7d7a9c10"


def _settings(**kw: object) -> BillingSettings:
    return BillingSettings(internal_token=SecretStr("t"), plans={"free": FREE, "pro": PRO}, **kw)  # type: ignore[arg-type]


def test_the_catalogue_needs_free_and_pro_and_stripe_needs_the_pro_price(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="pro"):
        BillingSettings(internal_token=SecretStr("t"), plans={"free": FREE})  # type: ignore[call-arg]
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_x")
    unpriced = PRO.model_copy(update={"stripe_price_id": ""})
    with pytest.raises(ValidationError, match="stripe_price_id"):
        BillingSettings(internal_token=SecretStr("t"), plans={"free": FREE, "pro": unpriced})  # type: ignore[call-arg]
    settings = _settings()
    assert settings.stripe_enabled and not settings.webhooks_enabled
    assert settings.tier_of_price("price_pro") == "pro" and settings.tier_of_price("price_other") is None


def _subscription(status: str, item: dict[str, object]) -> dict[str, object]:
    return {
        "id": "sub_1",
        "customer": {"id": "cus_1", "object": "customer"},  # expanded
        "status": status,
        "metadata": {"account_id": ACCOUNT},
        "items": {"data": [item]},
    }


@pytest.mark.parametrize(
    "item",
    [{"price": {"id": "price_pro"}}, {"plan": {"id": "price_pro"}}, {"price": "price_pro"}],
    ids=["price", "legacy plan", "unexpanded"],
)
def test_the_price_is_read_however_stripe_sends_it(item: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    snapshot = SubscriptionSnapshot.from_stripe(_subscription("active", item))
    assert (snapshot.price_id, snapshot.customer_id, snapshot.account_id) == ("price_pro", "cus_1", ACCOUNT)
    assert snapshot.tier(_settings()) == "pro"


@pytest.mark.parametrize(
    ("status", "tier"),
    [("active", "pro"), ("trialing", "pro"), ("past_due", "pro"), ("unpaid", "free"), ("canceled", "free"),
     ("incomplete", "free"), ("incomplete_expired", "free")],
)  # fmt: skip
def test_only_live_statuses_keep_the_paid_tier(status: str, tier: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    snapshot = SubscriptionSnapshot.from_stripe(_subscription(status, {"price": {"id": "price_pro"}}))
    assert snapshot.tier(_settings()) == tier


def test_metadata_that_is_not_an_account_id_is_ignored() -> None:
    obj = {"id": "sub_1", "customer": "cus_1", "metadata": {"account_id": "'; DROP TABLE"}, "items": {"data": []}}
    assert SubscriptionSnapshot.from_stripe(obj).account_id == ""


def test_an_invoice_names_its_subscription_in_either_api_era() -> None:
    assert invoice_subscription({"subscription": "sub_old"}) == "sub_old"
    parent = {"parent": {"subscription_details": {"subscription": "sub_new"}}}
    assert invoice_subscription(parent) == "sub_new"
    assert invoice_subscription({"parent": None}) == ""
