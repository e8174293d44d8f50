"""The configuration reference (docs/configuration.md) names every environment variable the services read."""

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from orqen_accounting.settings import AccountingSettings
from orqen_billing.settings import BillingSettings
from orqen_dispatch.settings import DispatchSettings
from orqen_edge.settings import EdgeSettings
from orqen_optimizer.settings import OptimizerSettings

CONFIGURATION = Path(__file__).resolve().parents[4] / "docs" / "configuration.md"


def _env_names(settings: type[BaseSettings]) -> set[str]:
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.add(str(choices[0]) if choices else f"ORQEN_{name.upper()}")
    return names


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", CONFIGURATION.read_text()))
    read = set().union(
        *(
            _env_names(s)
            for s in (EdgeSettings, OptimizerSettings, DispatchSettings, AccountingSettings, BillingSettings)
        )
    )
    assert read - documented == set()
