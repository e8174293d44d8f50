"""EdgeSettings declares the gRPC addresses edge uses and no others."""

from orqen_edge.settings import EdgeSettings


def test_only_the_addresses_it_uses() -> None:
    # The edge calls all four gRPC services.
    assert sorted(name for name in EdgeSettings.model_fields if name.endswith("_addr")) == [
        "accounting_addr",
        "billing_addr",
        "dispatch_addr",
        "optimizer_addr",
    ]
