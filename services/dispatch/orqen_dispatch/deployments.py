"""Which logical models are load-balanced for an account, and over which deployments.

Two sources: the operator's ORQEN_MODEL_DEPLOYMENTS (for every account) and the account's
own, saved through the provider API (accounting keeps them, `AccountConfig` carries them).
An account's balanced model replaces the operator's of the same name. The `Balancer` orders
the deployments per request; the servicer turns each into a `Target`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from orqen.v1 import dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.deployments import BalancedModel
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.balancer import Balancer, DeploymentSlot
from orqen_dispatch.resilience import Target

OPERATOR = "operator"
ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Balanced:
    """A balanced model as one account sees it: whose it is, and the health scope of its deployments."""

    model: BalancedModel
    source: str  # ACCOUNT or OPERATOR
    scope: str  # the account id for the account's own, OPERATOR for the operator's


class LoadBalancing:
    """The balanced models of each account, and their deployments in the order to try them."""

    def __init__(self, balancer: Balancer, operator_models: Mapping[str, BalancedModel]) -> None:
        self._balancer = balancer
        self._operator_models = dict(operator_models)

    def find(self, account_id: str, config: AccountConfig, model: str) -> Balanced | None:
        """The balanced model named `model` for the account, or None when it has no deployments."""
        if (own := config.balanced_models.get(model)) is not None:
            return Balanced(own, ACCOUNT, account_id)
        if (shared := self._operator_models.get(model)) is not None:
            return Balanced(shared, OPERATOR, OPERATOR)
        return None

    def models(self, account_id: str, config: AccountConfig) -> Iterator[Balanced]:
        """Every balanced model the account has: its own, then the operator's it did not replace."""
        for name in {**self._operator_models, **config.balanced_models}:
            found = self.find(account_id, config, name)
            assert found is not None
            yield found

    async def order(self, balanced: Balanced) -> list[DeploymentSlot]:
        """The deployments to try for one request, in order (see orqen_dispatch.balancer)."""
        return await self._balancer.order(balanced.scope, balanced.model)

    async def status(self, balanced: Balanced) -> list[dispatch_pb2.DeploymentStatus]:
        """The deployments as /v1/account/routing/models/status lists them."""
        return await self._balancer.status(balanced.scope, balanced.source, balanced.model)

    def charge(self, target: Target, usage: TokenUsage) -> None:
        """Spend the tokens of a finished call from its deployment's tokens-per-minute budget."""
        if isinstance(target.deployment, DeploymentSlot):
            self._balancer.charge(target.deployment, usage)
