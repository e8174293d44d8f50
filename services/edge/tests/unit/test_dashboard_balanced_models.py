"""The Providers page's load-balanced model forms: one deployment added, put in place of the one of its
name or deleted, the model's whole list then saved as the account API saves it, or nothing saved."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from litestar.exceptions import NotFoundException

from orqen.v1 import accounting_pb2
from orqen_common.errors import OrqenError
from orqen_edge.account.deployments import DeploymentBody
from orqen_edge.dashboard.balanced_models import delete_deployment, save_from_form, with_deployment
from orqen_edge.runtime import Runtime

ACCOUNT = "acct-1"


class Accounting:
    """The three accounting calls the forms make, over one account's stored models."""

    def __init__(self, *models: accounting_pb2.ModelDeployments) -> None:
        self.models = {m.model: m for m in models}
        self.saved: list[accounting_pb2.ModelDeployments] = []
        self.deleted: list[str] = []

    async def list_model_deployments(self, account_id: str) -> accounting_pb2.ModelDeploymentsList:
        assert account_id == ACCOUNT
        return accounting_pb2.ModelDeploymentsList(models=self.models.values())

    async def put_model_deployments(self, balanced: accounting_pb2.ModelDeployments) -> accounting_pb2.ModelDeployments:
        self.saved.append(balanced)
        return balanced

    async def delete_model_deployments(
        self, account_id: str, model: str
    ) -> accounting_pb2.DeleteModelDeploymentsResponse:
        self.deleted.append(model)
        return accounting_pb2.DeleteModelDeploymentsResponse(deleted=True)


def stored(model: str, *names: str, strategy: str = "weighted") -> accounting_pb2.ModelDeployments:
    deployments = [accounting_pb2.ModelDeployment(name=n, provider="openai", weight=2, rpm=60) for n in names]
    return accounting_pb2.ModelDeployments(account_id=ACCOUNT, model=model, strategy=strategy, deployments=deployments)


def runtime(accounting: Accounting) -> Runtime:
    return cast(Runtime, SimpleNamespace(downstream=accounting))


def form(**fields: str) -> dict[str, str]:
    return {"model": "team-model", "strategy": "weighted", "name": "b", "provider": "openai", **fields}


def test_a_deployment_takes_the_place_of_the_one_of_its_name_or_comes_last() -> None:
    a, b, new_b = DeploymentBody("a", "openai"), DeploymentBody("b", "groq"), DeploymentBody("b", "openai", weight=5)
    assert with_deployment([a, b], new_b) == [a, new_b]
    assert with_deployment([b, a], DeploymentBody("c", "openai")) == [b, a, DeploymentBody("c", "openai")]
    assert with_deployment([], a) == [a]


async def test_saving_adds_the_deployment_to_the_models_list_with_the_forms_strategy() -> None:
    accounting = Accounting(stored("team-model", "a"), stored("other", "x"))
    fields = form(strategy="least_inflight", upstream_model="gpt-4o-mini", weight="3", rpm="", tpm="900")
    saved = await save_from_form(runtime(accounting), ACCOUNT, {k: v for k, v in fields.items() if v})
    assert (saved.account_id, saved.model, saved.strategy) == (ACCOUNT, "team-model", "least_inflight")
    assert [(d.name, d.model, d.weight, d.rpm, d.tpm) for d in saved.deployments] == [
        ("a", "", 2, 60, 0),  # the stored one, kept as it was
        ("b", "gpt-4o-mini", 3, 0, 900),
    ]


async def test_a_new_model_starts_with_the_forms_deployment_and_the_api_defaults() -> None:
    accounting = Accounting()
    saved = await save_from_form(runtime(accounting), ACCOUNT, form(model="brand-new"))
    assert saved.model == "brand-new" and saved.strategy == "weighted"
    assert [(d.name, d.provider, d.weight, d.rpm) for d in saved.deployments] == [("b", "openai", 1, 0)]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"weight": "5000"}, "weight"),
        ({"rpm": "-1"}, "rpm"),
        ({"weight": "many"}, "weight"),
        ({"strategy": "random"}, "strategy"),
        ({"name": ""}, "name"),
    ],
)
async def test_a_refused_field_is_named_and_nothing_is_saved(fields: dict[str, str], named: str) -> None:
    accounting = Accounting(stored("team-model", "a"))
    typed = {k: v for k, v in form(**fields).items() if v}
    with pytest.raises(OrqenError) as refused:
        await save_from_form(runtime(accounting), ACCOUNT, typed)
    assert refused.value.http_status == 400 and named in refused.value.message
    assert accounting.saved == []


async def test_a_seventeenth_deployment_is_refused_as_the_api_refuses_it() -> None:
    accounting = Accounting(stored("team-model", *(f"d{i}" for i in range(16))))
    with pytest.raises(OrqenError) as refused:
        await save_from_form(runtime(accounting), ACCOUNT, form(name="d16"))
    assert "deployments" in refused.value.message and accounting.saved == []


async def test_deleting_a_deployment_saves_the_rest_and_the_last_one_deletes_the_model() -> None:
    accounting = Accounting(stored("team-model", "a", "b", strategy="lowest_latency"))
    await delete_deployment(runtime(accounting), ACCOUNT, "team-model", "a")
    (kept,) = accounting.saved
    assert kept.strategy == "lowest_latency" and [(d.name, d.weight, d.rpm) for d in kept.deployments] == [("b", 2, 60)]
    assert accounting.deleted == []

    accounting = Accounting(stored("team-model", "b"))
    await delete_deployment(runtime(accounting), ACCOUNT, "team-model", "b")
    assert accounting.deleted == ["team-model"] and accounting.saved == []


@pytest.mark.parametrize(("model", "deployment"), [("team-model", "nope"), ("not-balanced", "a")])
async def test_deleting_what_the_account_does_not_have_is_not_found(model: str, deployment: str) -> None:
    accounting = Accounting(stored("team-model", "a"))
    with pytest.raises(NotFoundException):
        await delete_deployment(runtime(accounting), ACCOUNT, model, deployment)
    assert accounting.saved == [] and accounting.deleted == []
