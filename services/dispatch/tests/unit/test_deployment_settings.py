"""ORQEN_MODEL_DEPLOYMENTS: the operator's balanced models, checked by the rules accounts' follow."""

import json

import pytest

from orqen_common.deployments import BalancedModel, Deployment
from orqen_common.settings import load_settings
from orqen_dispatch.settings import DispatchSettings


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "test-internal-token")


def test_the_operators_balanced_models_are_read_with_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {
        "llama-70b": {
            "strategy": "lowest_latency",
            "deployments": [
                {"name": "a", "provider": "vllm-a", "model": "meta-llama/Llama-3.3-70B-Instruct", "weight": 3},
                {"name": "east", "provider": "bedrock", "region": "us-east-1", "rpm": 600, "tpm": 90000},
            ],
        },
        "gpt-4o": {"deployments": [{"name": "only", "provider": "openai"}]},
    }
    monkeypatch.setenv("ORQEN_MODEL_DEPLOYMENTS", json.dumps(spec))
    monkeypatch.setenv("ORQEN_DEPLOYMENT_EJECT_BASE_SECONDS", "2")
    settings = DispatchSettings()
    assert settings.balanced_models() == {
        "llama-70b": BalancedModel(
            "llama-70b",
            "lowest_latency",
            (
                Deployment("a", "vllm-a", "meta-llama/Llama-3.3-70B-Instruct", weight=3),
                Deployment("east", "bedrock", region="us-east-1", rpm=600, tpm=90000),
            ),
        ),
        "gpt-4o": BalancedModel("gpt-4o", "weighted", (Deployment("only", "openai"),)),
    }
    assert settings.ejection_policy().cooling_s(1) == 2.0


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"m": {"deployments": []}}, "model 'm': A balanced model needs 1 to 16 deployments"),
        ({"m": {"deployments": [{"name": "a", "provider": "openai", "weight": 0}]}}, "deployments[0].weight"),
        ({"m": {"strategy": "fastest", "deployments": [{"name": "a", "provider": "openai"}]}}, "strategy"),
        ({"m": {"deployments": [{"name": "a", "provider": "openai", "colour": "red"}]}}, "colour"),
        ({"orqen/auto": {"deployments": [{"name": "a", "provider": "openai"}]}}, "orqen/*"),
    ],
)
def test_a_malformed_value_stops_dispatch_naming_the_model_and_field(
    monkeypatch: pytest.MonkeyPatch, spec: dict[str, object], named: str
) -> None:
    monkeypatch.setenv("ORQEN_MODEL_DEPLOYMENTS", json.dumps(spec))
    with pytest.raises(SystemExit) as stopped:
        load_settings(DispatchSettings)
    assert "model_deployments" in str(stopped.value) and named in str(stopped.value)
