"""DispatchSettings declares the gRPC addresses dispatch uses and no others."""

from orqen_dispatch.settings import DispatchSettings


def test_only_the_addresses_it_uses() -> None:
    # Dispatch listens on its own address and calls accounting (API keys, credentials, preferences).
    assert sorted(name for name in DispatchSettings.model_fields if name.endswith("_addr")) == [
        "accounting_addr",
        "dispatch_addr",
    ]
