"""BillingSettings declares the gRPC addresses billing uses and no others."""

from orqen_billing.settings import BillingSettings


def test_only_the_addresses_it_uses() -> None:
    # Billing listens on its own address and calls accounting (API keys).
    assert sorted(name for name in BillingSettings.model_fields if name.endswith("_addr")) == [
        "accounting_addr",
        "billing_addr",
    ]
