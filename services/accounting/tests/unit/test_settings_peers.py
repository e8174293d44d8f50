"""AccountingSettings declares the gRPC addresses accounting uses and no others."""

from orqen_accounting.settings import AccountingSettings


def test_only_the_addresses_it_uses() -> None:
    # Accounting listens on its own address and calls no other service.
    assert sorted(name for name in AccountingSettings.model_fields if name.endswith("_addr")) == ["accounting_addr"]
