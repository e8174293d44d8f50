"""Every call the edge makes to the gRPC services, in one place.

`Downstream` keeps the channels and the stubs to itself and has one method per RPC the
edge uses. It applies what every call needs: its deadline, the metadata it carries (the
internal token, the request id and the trace context, added by the channels it opens:
orqen_common.grpc_client), and the translation of a gRPC failure into an OrqenError, ready
to be rendered in the caller's SDK shape (the table: orqen_common.errors). Two calls differ:
`plan` raises the gRPC error itself, since its caller forwards the request unoptimized on any
failure, and API keys are resolved by the authenticator shared with the other services
(orqen_common.auth), which this client builds on its accounting stub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
import structlog
from google.protobuf.message import Message
from redis.asyncio import Redis

from orqen.v1 import (
    accounting_pb2,
    accounting_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    common_pb2,
    dispatch_pb2,
    dispatch_pb2_grpc,
    optimizer_pb2,
    optimizer_pb2_grpc,
    usage_pb2,
)
from orqen_common.auth import ApiKeyAuthenticator
from orqen_common.cache import AuthCacheKeys
from orqen_common.changes import ChangeWatch
from orqen_common.errors import from_rpc_error
from orqen_common.grpc_client import Balancer, open_channel, open_channels
from orqen_common.healthcheck import health_status
from orqen_edge.settings import EdgeSettings

log = structlog.get_logger(__name__)

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

_OPTIMIZER, _DISPATCH, _ACCOUNTING, _BILLING = "optimizer", "dispatch", "accounting", "billing"
# What the account API and the dashboard ask: small records, indexed rows and daily rollups.
_ACCOUNT_API_DEADLINE_S = 10.0
# Budget policies and the ledger's sums a request may wait on (rarely: see orqen_edge.budgets).
_LEDGER_DEADLINE_S = 2.0
# Billing calls that wait on Stripe's API.
_STRIPE_DEADLINE_S = 30.0


@contextmanager
def _translated(service: str) -> Iterator[None]:
    """gRPC failures of a call to `service` leave as OrqenError."""
    try:
        yield
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err, service) from None


async def _unary(
    service: str,
    rpc: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
    request: _Request,
    deadline_s: float | None = _ACCOUNT_API_DEADLINE_S,
) -> _Response:
    """One request-response call with its deadline; a failure leaves as OrqenError."""
    with _translated(service):
        return await rpc(request, timeout=deadline_s)


class Downstream:
    """The edge's client of the four gRPC services: one method per RPC it calls."""

    def __init__(self, settings: EdgeSettings) -> None:
        token = settings.internal_token.get_secret_value()
        # A plan that misses this deadline is not waited for: the request goes on unoptimized.
        self._plan_deadline_s = settings.optimizer_deadline_ms / 1000
        # The optimizer is a group of worker processes on one port: its plans spread over them
        # only through several connections (orqen_common.grpc_client.open_channels), by the worker that
        # each answer names (Balancer), which opens up to as many again to reach a worker none reached.
        self._optimizer_channels = open_channels(settings.optimizer_addr, token, settings.optimizer_channels)

        def another_optimizer_connection() -> optimizer_pb2_grpc.OptimizerAsyncStub:
            count = len(self._optimizer_channels) + 1
            log.info("opening another optimizer connection to reach every worker", count=count)
            channel = open_channel(settings.optimizer_addr, token, own_connection=True)
            self._optimizer_channels.append(channel)
            return optimizer_pb2_grpc.OptimizerStub(channel)

        self._channels = {
            _DISPATCH: open_channel(settings.dispatch_addr, token),
            _ACCOUNTING: open_channel(settings.accounting_addr, token),
            _BILLING: open_channel(settings.billing_addr, token),
        }
        self._optimizer = Balancer(
            [optimizer_pb2_grpc.OptimizerStub(c) for c in self._optimizer_channels],
            more=another_optimizer_connection,
            most=2 * settings.optimizer_channels,
        )
        self._dispatch = dispatch_pb2_grpc.DispatchStub(self._channels[_DISPATCH])
        self._accounting = accounting_pb2_grpc.AccountingStub(self._channels[_ACCOUNTING])
        self._billing = billing_pb2_grpc.BillingStub(self._channels[_BILLING])

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in [*self._optimizer_channels, *self._channels.values()]))

    async def health(self) -> dict[str, str]:
        """Each service's grpc.health.v1 status: "ok", or why not.

        One of the optimizer's connections answers for all: each of its workers says SERVING only
        once every one of them can plan (orqen_common.worker_group).
        """
        channels = {_OPTIMIZER: self._optimizer_channels[0], **self._channels}
        statuses = await asyncio.gather(*(health_status(channel) for channel in channels.values()))
        return dict(zip(channels, statuses, strict=True))

    # Optimizer

    async def plan(self, ctx: common_pb2.RequestContext, chat_json: bytes) -> optimizer_pb2.PlanResponse:
        """The optimization plan; raises the gRPC error itself so the caller can fail open."""
        request = optimizer_pb2.PlanRequest(context=ctx, chat_json=chat_json)
        with self._optimizer() as (optimizer, heard):
            response = await optimizer.Plan(request, timeout=self._plan_deadline_s)
            heard(response.worker, response.group, response.workers)
        return response

    # Dispatch: chat and proxied calls last as long as the provider takes, so they have no deadline here.

    async def complete(self, request: dispatch_pb2.CompleteRequest) -> dispatch_pb2.CompleteResponse:
        return await _unary(_DISPATCH, self._dispatch.Complete, request, deadline_s=None)

    async def stream(self, request: dispatch_pb2.CompleteRequest) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        call = self._dispatch.Stream(request)
        try:
            with _translated(_DISPATCH):
                async for event in call:
                    yield event
        finally:
            call.cancel()  # no-op when finished; stops the upstream call when the client left

    async def proxy(
        self, frames: AsyncIterator[dispatch_pb2.ProxyRequestFrame]
    ) -> AsyncIterator[dispatch_pb2.ProxyResponseFrame]:
        """A proxied call: `frames` are sent as gRPC lets them go (never read ahead), replies come as they arrive.

        gRPC reads `frames` in a task of its own and only cancels the call when they fail;
        the failure itself (a malformed or too large upload) is what the caller is told.
        """
        failed: list[Exception] = []

        async def sent() -> AsyncIterator[dispatch_pb2.ProxyRequestFrame]:
            try:
                async for frame in frames:
                    yield frame
            except Exception as err:
                failed.append(err)
                raise

        call = self._dispatch.Proxy(sent())
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as err:
            if failed:
                raise failed[0] from None
            raise from_rpc_error(err, _DISPATCH) from None
        except asyncio.CancelledError:
            if failed:  # gRPC cancelled the call because `frames` failed: that failure is the answer
                raise failed[0] from None
            raise
        finally:
            call.cancel()  # no-op when finished; stops the upstream call when the client left

    async def save_credential(self, request: dispatch_pb2.SaveCredentialRequest) -> accounting_pb2.CredentialInfo:
        """Dispatch validates and seals the secret, then accounting stores it."""
        return await _unary(_DISPATCH, self._dispatch.SaveCredential, request)

    async def list_models(self, account_id: str) -> dispatch_pb2.ListModelsResponse:
        request = dispatch_pb2.ListModelsRequest(account_id=account_id)
        return await _unary(_DISPATCH, self._dispatch.ListModels, request)

    async def get_response_cache_usage(self, account_id: str) -> dispatch_pb2.ResponseCacheUsage:
        request = dispatch_pb2.ResponseCacheRef(account_id=account_id)
        return await _unary(_DISPATCH, self._dispatch.GetResponseCacheUsage, request)

    async def purge_response_cache(self, account_id: str) -> dispatch_pb2.ResponseCacheUsage:
        request = dispatch_pb2.ResponseCacheRef(account_id=account_id)
        return await _unary(_DISPATCH, self._dispatch.PurgeResponseCache, request)

    # Accounting: the shapes of request most of its RPCs take

    async def _of_account(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[accounting_pb2.AccountRef, _Response], account_id: str
    ) -> _Response:
        return await _unary(_ACCOUNTING, rpc, accounting_pb2.AccountRef(account_id=account_id))

    async def _over_days(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[usage_pb2.UsagePeriod, _Response], account_id: str, days: int
    ) -> _Response:
        """A usage report over the last `days` UTC days (0: accounting's default period)."""
        return await _unary(_ACCOUNTING, rpc, usage_pb2.UsagePeriod(account_id=account_id, days=days))

    # Accounting: keys, owners and credentials

    def api_key_authenticator(
        self, redis: Redis, cache_ttl_seconds: int, cache_keys: AuthCacheKeys, stale_seconds: int, watch: ChangeWatch
    ) -> ApiKeyAuthenticator:
        """Resolves callers' API keys: kept in process while `watch` hears revocations, else Redis, then accounting."""
        return ApiKeyAuthenticator(redis, self._accounting, cache_ttl_seconds, cache_keys, stale_seconds, watch)

    async def verify_owner(self, email: str, password: str) -> accounting_pb2.Owner:
        request = accounting_pb2.VerifyOwnerRequest(email=email, password=password)
        return await _unary(_ACCOUNTING, self._accounting.VerifyOwner, request)

    async def list_owners(self, account_id: str) -> accounting_pb2.ListOwnersResponse:
        return await self._of_account(self._accounting.ListOwners, account_id)

    async def create_owner_invite(self, account_id: str, invited_by_owner_id: str) -> accounting_pb2.OwnerInvite:
        request = accounting_pb2.CreateOwnerInviteRequest(
            account_id=account_id, invited_by_owner_id=invited_by_owner_id
        )
        return await _unary(_ACCOUNTING, self._accounting.CreateOwnerInvite, request)

    async def accept_owner_invite(self, token: str, email: str, password: str) -> accounting_pb2.Owner:
        request = accounting_pb2.AcceptOwnerInviteRequest(token=token, email=email, password=password)
        return await _unary(_ACCOUNTING, self._accounting.AcceptOwnerInvite, request)

    async def remove_owner(self, account_id: str, owner_id: str) -> accounting_pb2.Owner:
        request = accounting_pb2.OwnerRef(account_id=account_id, owner_id=owner_id)
        return await _unary(_ACCOUNTING, self._accounting.RemoveOwner, request)

    async def change_owner_password(
        self, account_id: str, owner_id: str, old_password: str, new_password: str
    ) -> accounting_pb2.Owner:
        request = accounting_pb2.ChangeOwnerPasswordRequest(
            account_id=account_id, owner_id=owner_id, old_password=old_password, new_password=new_password
        )
        return await _unary(_ACCOUNTING, self._accounting.ChangeOwnerPassword, request)

    async def list_api_keys(self, account_id: str) -> accounting_pb2.ListApiKeysResponse:
        return await self._of_account(self._accounting.ListApiKeys, account_id)

    async def create_api_key(self, account_id: str, name: str) -> accounting_pb2.CreateApiKeyResponse:
        request = accounting_pb2.CreateApiKeyRequest(account_id=account_id, name=name)
        return await _unary(_ACCOUNTING, self._accounting.CreateApiKey, request)

    async def revoke_api_key(self, account_id: str, api_key_id: str) -> accounting_pb2.ApiKeyInfo:
        request = accounting_pb2.ApiKeyRef(account_id=account_id, api_key_id=api_key_id)
        return await _unary(_ACCOUNTING, self._accounting.RevokeApiKey, request)

    async def set_api_key_limits(self, limits: accounting_pb2.ApiKeyLimits) -> accounting_pb2.ApiKeyInfo:
        return await _unary(_ACCOUNTING, self._accounting.SetApiKeyLimits, limits)

    async def put_budget(self, budget: accounting_pb2.BudgetDefinition) -> accounting_pb2.BudgetDefinition:
        return await _unary(_ACCOUNTING, self._accounting.PutBudget, budget)

    async def list_budgets(self, account_id: str) -> accounting_pb2.ListBudgetsResponse:
        return await self._of_account(self._accounting.ListBudgets, account_id)

    async def delete_budget(self, account_id: str, budget_id: str) -> accounting_pb2.BudgetDefinition:
        request = accounting_pb2.BudgetRef(account_id=account_id, budget_id=budget_id)
        return await _unary(_ACCOUNTING, self._accounting.DeleteBudget, request)

    async def limit_policy(self, account_id: str) -> accounting_pb2.LimitPolicy:
        """On the request path (once per account per ORQEN_BUDGET_POLICY_TTL_SECONDS): a short deadline."""
        request = accounting_pb2.AccountRef(account_id=account_id)
        return await _unary(_ACCOUNTING, self._accounting.GetLimitPolicy, request, deadline_s=_LEDGER_DEADLINE_S)

    async def budget_use(self, request: accounting_pb2.BudgetUseRequest) -> accounting_pb2.BudgetUse:
        return await _unary(_ACCOUNTING, self._accounting.GetBudgetUse, request, deadline_s=_LEDGER_DEADLINE_S)

    async def record_budget_alert(self, alert: accounting_pb2.BudgetAlert) -> accounting_pb2.BudgetAlert:
        return await _unary(_ACCOUNTING, self._accounting.RecordBudgetAlert, alert)

    async def list_credentials(self, account_id: str) -> accounting_pb2.ListCredentialsResponse:
        return await self._of_account(self._accounting.ListCredentials, account_id)

    async def delete_credential(self, account_id: str, credential_id: str) -> accounting_pb2.DeleteCredentialResponse:
        request = accounting_pb2.CredentialRef(account_id=account_id, credential_id=credential_id)
        return await _unary(_ACCOUNTING, self._accounting.DeleteCredential, request)

    # Accounting: routing preferences, model toggles and what routing did

    async def get_routing_preferences(self, account_id: str) -> accounting_pb2.RoutingPreferences:
        return await self._of_account(self._accounting.GetRoutingPreferences, account_id)

    async def put_routing_preferences(
        self, preferences: accounting_pb2.RoutingPreferences
    ) -> accounting_pb2.RoutingPreferences:
        return await _unary(_ACCOUNTING, self._accounting.PutRoutingPreferences, preferences)

    async def get_cache_settings(self, account_id: str) -> accounting_pb2.CacheSettings:
        return await self._of_account(self._accounting.GetCacheSettings, account_id)

    async def put_cache_settings(self, settings: accounting_pb2.CacheSettings) -> accounting_pb2.CacheSettings:
        return await _unary(_ACCOUNTING, self._accounting.PutCacheSettings, settings)

    async def set_model_toggle(self, account_id: str, model: str, enabled: bool) -> accounting_pb2.ModelToggles:
        request = accounting_pb2.SetModelToggleRequest(account_id=account_id, model=model, enabled=enabled)
        return await _unary(_ACCOUNTING, self._accounting.SetModelToggle, request)

    async def list_model_deployments(self, account_id: str) -> accounting_pb2.ModelDeploymentsList:
        return await self._of_account(self._accounting.ListModelDeployments, account_id)

    async def put_model_deployments(self, balanced: accounting_pb2.ModelDeployments) -> accounting_pb2.ModelDeployments:
        return await _unary(_ACCOUNTING, self._accounting.PutModelDeployments, balanced)

    async def delete_model_deployments(
        self, account_id: str, model: str
    ) -> accounting_pb2.DeleteModelDeploymentsResponse:
        request = accounting_pb2.ModelDeploymentsRef(account_id=account_id, model=model)
        return await _unary(_ACCOUNTING, self._accounting.DeleteModelDeployments, request)

    async def list_routing_traces(self, account_id: str, limit: int) -> accounting_pb2.ListRoutingTracesResponse:
        request = accounting_pb2.ListRoutingTracesRequest(account_id=account_id, limit=limit)
        return await _unary(_ACCOUNTING, self._accounting.ListRoutingTraces, request)

    async def get_routing_calibration(self, account_id: str, days: int) -> accounting_pb2.RoutingCalibration:
        request = accounting_pb2.RoutingPeriod(account_id=account_id, days=days)
        return await _unary(_ACCOUNTING, self._accounting.GetRoutingCalibration, request)

    async def reset_tool_learning(self, account_id: str) -> accounting_pb2.ToolLearningReset:
        request = accounting_pb2.AccountRef(account_id=account_id)
        return await _unary(_ACCOUNTING, self._accounting.ResetToolLearning, request)

    async def get_routing_insights(self, account_id: str, days: int) -> accounting_pb2.RoutingInsights:
        request = accounting_pb2.RoutingPeriod(account_id=account_id, days=days)
        return await _unary(_ACCOUNTING, self._accounting.GetRoutingInsights, request)

    # Accounting: usage and analytics over the last `days` days (from the daily rollups)

    async def get_usage_summary(self, account_id: str) -> usage_pb2.UsageSummary:
        """The current month."""
        return await self._over_days(self._accounting.GetUsageSummary, account_id, 0)

    async def get_usage_daily(self, account_id: str, days: int) -> usage_pb2.UsageDaily:
        return await self._over_days(self._accounting.GetUsageDaily, account_id, days)

    async def get_analytics_daily(self, account_id: str, days: int) -> usage_pb2.AnalyticsDaily:
        return await self._over_days(self._accounting.GetAnalyticsDaily, account_id, days)

    async def get_savings(self, account_id: str, days: int) -> usage_pb2.SavingsBreakdown:
        return await self._over_days(self._accounting.GetSavings, account_id, days)

    async def get_latency(self, account_id: str, days: int) -> usage_pb2.LatencySummary:
        return await self._over_days(self._accounting.GetLatency, account_id, days)

    async def get_optimization_stats(self, account_id: str, days: int) -> usage_pb2.OptimizationStats:
        return await self._over_days(self._accounting.GetOptimizationStats, account_id, days)

    async def get_tool_health(self, account_id: str, days: int, limit: int) -> usage_pb2.ToolHealth:
        request = usage_pb2.ToolHealthRequest(account_id=account_id, days=days, limit=limit)
        return await _unary(_ACCOUNTING, self._accounting.GetToolHealth, request)

    # Accounting: the request log and the sessions that group it

    async def list_requests(self, listing: accounting_pb2.ListRequestsRequest) -> accounting_pb2.ListRequestsResponse:
        return await _unary(_ACCOUNTING, self._accounting.ListRequests, listing)

    async def get_request(self, account_id: str, request_id: str) -> accounting_pb2.RequestRecord:
        request = accounting_pb2.GetRequestRequest(account_id=account_id, request_id=request_id)
        return await _unary(_ACCOUNTING, self._accounting.GetRequest, request)

    async def list_sessions(self, account_id: str, limit: int, cursor: str) -> usage_pb2.ListSessionsResponse:
        request = usage_pb2.ListSessionsRequest(account_id=account_id, limit=limit, cursor=cursor)
        return await _unary(_ACCOUNTING, self._accounting.ListSessions, request)

    async def get_session(self, account_id: str, session_id: str) -> usage_pb2.Session:
        request = accounting_pb2.GetSessionRequest(account_id=account_id, session_id=session_id)
        return await _unary(_ACCOUNTING, self._accounting.GetSession, request)

    # Billing

    async def get_billing(self, account_id: str) -> billing_pb2.BillingStatus:
        return await _unary(_BILLING, self._billing.GetBilling, billing_pb2.GetBillingRequest(account_id=account_id))

    async def create_checkout(self, account_id: str, email: str) -> billing_pb2.StripeRedirect:
        request = billing_pb2.CreateCheckoutRequest(account_id=account_id, email=email)
        return await _unary(_BILLING, self._billing.CreateCheckout, request, _STRIPE_DEADLINE_S)

    async def create_portal(self, account_id: str) -> billing_pb2.StripeRedirect:
        request = billing_pb2.CreatePortalRequest(account_id=account_id)
        return await _unary(_BILLING, self._billing.CreatePortal, request, _STRIPE_DEADLINE_S)

    async def sync_checkout(self, account_id: str, session_id: str) -> billing_pb2.BillingStatus:
        request = billing_pb2.SyncCheckoutRequest(account_id=account_id, session_id=session_id)
        return await _unary(_BILLING, self._billing.SyncCheckout, request, _STRIPE_DEADLINE_S)

    async def sync_subscription(self, account_id: str) -> billing_pb2.BillingStatus:
        request = billing_pb2.GetBillingRequest(account_id=account_id)
        return await _unary(_BILLING, self._billing.SyncSubscription, request, _STRIPE_DEADLINE_S)

    async def handle_webhook(self, payload: bytes, signature: str) -> billing_pb2.WebhookOutcome:
        """Billing checks Stripe's signature over the exact payload bytes."""
        request = billing_pb2.WebhookDelivery(payload=payload, signature=signature)
        return await _unary(_BILLING, self._billing.HandleWebhook, request, _STRIPE_DEADLINE_S)
