"""How the Providers page's forms change a load-balanced model: one deployment added (or put in place
of the one of the same name) or deleted. The model's deployments are then saved as a whole list
through the account API's own function (orqen_edge.account.deployments.save_deployments), so the
limits and accounting's checks are the API's, and so is a refusal's message."""

from __future__ import annotations

import msgspec
from litestar.exceptions import NotFoundException

from orqen.v1 import accounting_pb2
from orqen_common.deployments import DEFAULT_STRATEGY
from orqen_edge.account.deployments import BalancedModelBody, DeploymentBody, save_deployments
from orqen_edge.dashboard.forms import form_struct
from orqen_edge.runtime import Runtime

# The form's fields that describe the deployment itself. Its upstream model is sent as `upstream_model`,
# since the form's `model` is the name callers send.
_DEPLOYMENT_FIELDS = ("name", "provider", "region", "weight", "rpm", "tpm")


async def save_from_form(runtime: Runtime, account_id: str, fields: dict[str, str]) -> accounting_pb2.ModelDeployments:
    """Adds the form's deployment to its model, or puts it in place of the one of the same name, and sets
    the model's strategy; what accounting stored. Nothing is saved when any of it is refused."""
    typed = {k: v for k, v in fields.items() if k in _DEPLOYMENT_FIELDS}
    if "upstream_model" in fields:
        typed["model"] = fields["upstream_model"]
    deployment = form_struct(typed, DeploymentBody)  # alone first, so a refusal names the form's own field
    model = fields.get("model", "")
    # Read, then saved whole: of two owners saving the same model at once, the last one's list wins,
    # as with two PUTs of the account API.
    current = await _balanced(runtime, account_id, model)
    deployments = with_deployment(_bodies(current) if current else [], deployment)
    body = _checked_body(fields.get("strategy", DEFAULT_STRATEGY), deployments)
    return await save_deployments(runtime, account_id, model, body)


def with_deployment(current: list[DeploymentBody], deployment: DeploymentBody) -> list[DeploymentBody]:
    """`current` with `deployment` in place of the one of its name, or after them when its name is new."""
    if any(d.name == deployment.name for d in current):
        return [deployment if d.name == deployment.name else d for d in current]
    return [*current, deployment]


async def delete_deployment(runtime: Runtime, account_id: str, model: str, deployment: str) -> None:
    """Deletes one deployment of the model; deleting its last one stops balancing the model. NotFound
    (the dashboard's 404) when this account has no such model or deployment, another account's included."""
    current = await _balanced(runtime, account_id, model)
    if current is None or deployment not in {d.name for d in current.deployments}:
        raise NotFoundException()
    kept = [d for d in _bodies(current) if d.name != deployment]
    if kept:
        await save_deployments(runtime, account_id, model, _checked_body(current.strategy, kept))
    else:
        await runtime.downstream.delete_model_deployments(account_id, model)


async def _balanced(runtime: Runtime, account_id: str, model: str) -> accounting_pb2.ModelDeployments | None:
    """The model's deployments and strategy in this account; None when the account does not balance it."""
    listed = await runtime.downstream.list_model_deployments(account_id)
    return next((m for m in listed.models if m.model == model), None)


def _bodies(balanced: accounting_pb2.ModelDeployments) -> list[DeploymentBody]:
    """The stored deployments as the account API's body describes them (a stored weight of 0 means 1)."""
    return [
        DeploymentBody(
            name=d.name, provider=d.provider, model=d.model, region=d.region, weight=d.weight or 1, rpm=d.rpm, tpm=d.tpm
        )
        for d in balanced.deployments
    ]


def _checked_body(strategy: str, deployments: list[DeploymentBody]) -> BalancedModelBody:
    """The whole model as the account API's body, checked against the limits the API checks a body it is
    sent against (a known strategy, at most 16 deployments)."""
    return form_struct({"strategy": strategy, "deployments": msgspec.to_builtins(deployments)}, BalancedModelBody)
