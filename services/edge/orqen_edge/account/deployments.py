"""Account API: load-balanced models, /v1/account/providers/deployments.

A logical model (the name callers send) served by several deployments of connected
providers, each with a weight and its own rate limits. Accounting checks and stores them
(orqen_common.deployments has the rules); dispatch balances over them, and
/v1/account/routing/models/status shows each deployment's health.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath
from msgspec import Meta

from orqen.v1 import accounting_pb2
from orqen_common.caller_text import checked_text
from orqen_common.context import Principal
from orqen_common.deployments import MAX_DEPLOYMENTS, MAX_WEIGHT
from orqen_edge.account.responses import plain
from orqen_edge.openapi import API_KEY, AUTHENTICATED, BODY, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

_PerMinute = Annotated[int, Meta(ge=0, le=2**31 - 1, description="Per minute; 0 (default): unlimited.")]


class DeploymentBody(msgspec.Struct, forbid_unknown_fields=True):
    """One deployment: a connected provider (its saved credential carries base URL and key)."""

    name: Annotated[str, Meta(min_length=1, max_length=64, description="Unique within the model.")]
    provider: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="openai, anthropic, bedrock, groq, or a saved or operator OpenAI-compatible provider.",
        ),
    ]
    model: Annotated[str, Meta(max_length=200, description="The upstream model id; default: the model's name.")] = ""
    region: Annotated[str, Meta(max_length=64, description="Bedrock only: this deployment's AWS region.")] = ""
    weight: Annotated[int, Meta(ge=1, le=MAX_WEIGHT, description="Share of traffic (weighted strategy).")] = 1
    rpm: _PerMinute = 0
    tpm: _PerMinute = 0


class BalancedModelBody(msgspec.Struct, forbid_unknown_fields=True):
    """How requests for a model are spread over its deployments."""

    deployments: Annotated[list[DeploymentBody], Meta(min_length=1, max_length=MAX_DEPLOYMENTS)]
    strategy: Literal["weighted", "least_inflight", "lowest_latency"] = "weighted"


class DeletedDeployments(msgspec.Struct):
    model: str
    deleted: bool


def _json(balanced: accounting_pb2.ModelDeployments) -> dict[str, Any]:
    return {k: v for k, v in plain(balanced).items() if k != "account_id"}


@get(
    "/v1/account/providers/deployments",
    summary="Load-balanced models and their deployments",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def list_deployments(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    found = await runtime.downstream.list_model_deployments(principal.account_id)
    return {"object": "list", "data": [_json(m) for m in found.models]}


@put(
    "/v1/account/providers/deployments/{model:path}",
    summary="Save (or replace) a model's deployments and balancing strategy",
    security=API_KEY,
    operation_class=json_body(BalancedModelBody),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def put_deployments(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    model: FromPath[str],
) -> dict[str, Any]:
    body = await read_struct(request, BalancedModelBody)
    return _json(await save_deployments(runtime, principal.account_id, model.lstrip("/"), body))


async def save_deployments(
    runtime: Runtime, account_id: str, model: str, body: BalancedModelBody
) -> accounting_pb2.ModelDeployments:
    """Save (or replace) the model's whole list of deployments and its strategy (the account API and the
    dashboard); what accounting stored, after its own checks (orqen_common.deployments)."""
    balanced = accounting_pb2.ModelDeployments(
        account_id=account_id,
        model=checked_text(model, "model"),
        strategy=body.strategy,
        deployments=[
            accounting_pb2.ModelDeployment(
                name=checked_text(d.name, "name"),
                provider=checked_text(d.provider, "provider"),
                model=checked_text(d.model, "model"),
                region=checked_text(d.region, "region"),
                weight=d.weight,
                rpm=d.rpm,
                tpm=d.tpm,
            )
            for d in body.deployments
        ],
    )
    return await runtime.downstream.put_model_deployments(balanced)


@delete(
    "/v1/account/providers/deployments/{model:path}",
    summary="Stop balancing a model: requests for it go to its provider as before",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED, 404),
)
async def delete_deployments(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], model: FromPath[str]
) -> DeletedDeployments:
    name = model.lstrip("/")
    deleted = await runtime.downstream.delete_model_deployments(principal.account_id, name)
    return DeletedDeployments(model=name, deleted=deleted.deleted)


ROUTES = (list_deployments, put_deployments, delete_deployments)
