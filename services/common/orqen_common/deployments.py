"""Load-balanced models: a logical model served by several deployments, and what a valid one is.

An account saves them through the provider API (accounting stores them), the operator sets
them in ORQEN_MODEL_DEPLOYMENTS (dispatch reads them); both are checked here, by one set of
rules, and dispatch balances over them (orqen_dispatch.balancer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from orqen.v1 import accounting_pb2
from orqen_common.allowed_models import ROUTING_PREFIX
from orqen_common.errors import invalid_request

STRATEGIES = ("weighted", "least_inflight", "lowest_latency")
DEFAULT_STRATEGY = "weighted"
MAX_DEPLOYMENTS = 16
MAX_WEIGHT = 1000
MAX_PER_MINUTE = 2**31 - 1  # rpm and tpm travel as int32
MAX_MODEL_NAME = 200

DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# A region becomes part of a host name: nothing but letters, digits and hyphens may reach it.
AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream serving a logical model (the fields of accounting.proto's ModelDeployment)."""

    name: str
    provider: str
    model: str = ""  # the upstream model id; empty: the logical model's name
    region: str = ""  # Bedrock only
    weight: int = 1
    rpm: int = 0  # 0: unlimited
    tpm: int = 0


@dataclass(frozen=True, slots=True)
class BalancedModel:
    """A logical model, how a deployment is chosen for each request, and its deployments."""

    model: str
    strategy: str
    deployments: tuple[Deployment, ...]


def checked_model(model: str, strategy: str, deployments: Iterable[Deployment]) -> BalancedModel:
    """The balanced model if every field makes sense; an invalid_request naming the field otherwise."""
    if not model.strip() or len(model) > MAX_MODEL_NAME or model.startswith(ROUTING_PREFIX):
        raise invalid_request(
            f"Invalid model {model[:40]!r}: 1 to {MAX_MODEL_NAME} characters, not an orqen/* routing string."
        )
    strategy = strategy or DEFAULT_STRATEGY
    if strategy not in STRATEGIES:
        raise invalid_request(f"Invalid strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}.")
    checked = tuple(_checked(d, i) for i, d in enumerate(deployments))
    if not 1 <= len(checked) <= MAX_DEPLOYMENTS:
        raise invalid_request(f"A balanced model needs 1 to {MAX_DEPLOYMENTS} deployments, not {len(checked)}.")
    names = [d.name for d in checked]
    if len(set(names)) != len(names):
        raise invalid_request("Two deployments have the same name; each needs its own.")
    return BalancedModel(model, strategy, checked)


def _checked(deployment: Deployment, index: int) -> Deployment:
    where = f"deployments[{index}]"
    if not DEPLOYMENT_NAME.fullmatch(deployment.name):
        raise invalid_request(
            f"Invalid {where}.name {deployment.name[:40]!r}: letters, digits, '.', '_' or '-', at most 64."
        )
    if not PROVIDER_NAME.fullmatch(deployment.provider):
        raise invalid_request(f"Invalid {where}.provider {deployment.provider[:40]!r}: a provider name.")
    if len(deployment.model) > MAX_MODEL_NAME:
        raise invalid_request(f"{where}.model is longer than {MAX_MODEL_NAME} characters.")
    if deployment.region and (deployment.provider != "bedrock" or not AWS_REGION.fullmatch(deployment.region)):
        raise invalid_request(f"Invalid {where}.region {deployment.region[:40]!r}: an AWS region, for bedrock only.")
    if not 1 <= deployment.weight <= MAX_WEIGHT:
        raise invalid_request(f"Invalid {where}.weight {deployment.weight}: 1 to {MAX_WEIGHT}.")
    for field, value in (("rpm", deployment.rpm), ("tpm", deployment.tpm)):
        if not 0 <= value <= MAX_PER_MINUTE:
            raise invalid_request(f"Invalid {where}.{field} {value}: 0 (unlimited) or more.")
    return deployment


def from_message(message: accounting_pb2.ModelDeployments) -> BalancedModel:
    """The checked balanced model a ModelDeployments message describes (a weight of 0 reads as 1)."""
    deployments = (
        Deployment(d.name, d.provider, d.model, d.region, d.weight or 1, d.rpm, d.tpm) for d in message.deployments
    )
    return checked_model(message.model, message.strategy, deployments)


def to_message(model: BalancedModel, account_id: str = "") -> accounting_pb2.ModelDeployments:
    """The ModelDeployments message of a balanced model."""
    return accounting_pb2.ModelDeployments(
        account_id=account_id,
        model=model.model,
        strategy=model.strategy,
        deployments=[
            accounting_pb2.ModelDeployment(
                name=d.name, provider=d.provider, model=d.model, region=d.region, weight=d.weight, rpm=d.rpm, tpm=d.tpm
            )
            for d in model.deployments
        ],
    )
