"""OptimizerSettings declares the gRPC addresses optimizer uses and no others."""

from orqen_optimizer.settings import OptimizerSettings


def test_only_the_addresses_it_uses() -> None:
    # The optimizer listens on its own address and calls accounting (API keys, routing preferences).
    assert sorted(name for name in OptimizerSettings.model_fields if name.endswith("_addr")) == [
        "accounting_addr",
        "optimizer_addr",
    ]
