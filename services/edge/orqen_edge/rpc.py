"""Every call the edge makes to the gRPC services, in one place.

gRPC failures leave this module as OrqenError, ready to be rendered for the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import grpc

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
)
from orqen_common.errors import from_rpc_error
from orqen_common.grpc_client import open_channel
from orqen_common.healthcheck import health_status
from orqen_edge.settings import EdgeSettings


@contextmanager
def translated(service: str) -> Iterator[None]:
    """gRPC failures of a call to `service` leave as OrqenError, ready for the caller's SDK shape."""
    try:
        yield
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err, service) from None


class Downstream:
    """Channels and stubs of the four gRPC services."""

    def __init__(self, settings: EdgeSettings) -> None:
        token = settings.internal_token.get_secret_value()
        self._channels = {
            "optimizer": open_channel(settings.optimizer_addr, token),
            "dispatch": open_channel(settings.dispatch_addr, token),
            "accounting": open_channel(settings.accounting_addr, token),
            "billing": open_channel(settings.billing_addr, token),
        }
        self._optimizer = optimizer_pb2_grpc.OptimizerStub(self._channels["optimizer"])
        self.dispatch = dispatch_pb2_grpc.DispatchStub(self._channels["dispatch"])
        self.accounting = accounting_pb2_grpc.AccountingStub(self._channels["accounting"])
        self._billing = billing_pb2_grpc.BillingStub(self._channels["billing"])

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))

    async def plan(
        self, ctx: common_pb2.RequestContext, chat_json: bytes, deadline_s: float
    ) -> optimizer_pb2.PlanResponse:
        """The optimization plan; raises on any failure so the caller can fail open."""
        return await self._optimizer.Plan(
            optimizer_pb2.PlanRequest(context=ctx, chat_json=chat_json), timeout=deadline_s
        )

    async def complete(self, request: dispatch_pb2.CompleteRequest) -> dispatch_pb2.CompleteResponse:
        with translated("dispatch"):
            return await self.dispatch.Complete(request)

    async def stream(self, request: dispatch_pb2.CompleteRequest) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        call = self.dispatch.Stream(request)
        try:
            with translated("dispatch"):
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

        call = self.dispatch.Proxy(sent())
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as err:
            if failed:
                raise failed[0] from None
            raise from_rpc_error(err, "dispatch") from None
        except asyncio.CancelledError:
            if failed:  # gRPC cancelled the call because `frames` failed: that failure is the answer
                raise failed[0] from None
            raise
        finally:
            call.cancel()  # no-op when finished; stops the upstream call when the client left

    async def list_requests(self, listing: accounting_pb2.ListRequestsRequest) -> accounting_pb2.ListRequestsResponse:
        with translated("accounting"):
            return await self.accounting.ListRequests(listing, timeout=10)

    async def get_request(self, account_id: str, request_id: str) -> accounting_pb2.RequestRecord:
        with translated("accounting"):
            return await self.accounting.GetRequest(
                accounting_pb2.GetRequestRequest(account_id=account_id, request_id=request_id), timeout=10
            )

    async def billing(self, account_id: str) -> billing_pb2.BillingStatus:
        with translated("billing"):
            return await self._billing.GetBilling(billing_pb2.GetBillingRequest(account_id=account_id), timeout=10)

    async def create_checkout(self, account_id: str, email: str) -> billing_pb2.StripeRedirect:
        with translated("billing"):
            return await self._billing.CreateCheckout(
                billing_pb2.CreateCheckoutRequest(account_id=account_id, email=email), timeout=30
            )

    async def create_portal(self, account_id: str) -> billing_pb2.StripeRedirect:
        with translated("billing"):
            return await self._billing.CreatePortal(billing_pb2.CreatePortalRequest(account_id=account_id), timeout=30)

    async def sync_checkout(self, account_id: str, session_id: str) -> billing_pb2.BillingStatus:
        with translated("billing"):
            return await self._billing.SyncCheckout(
                billing_pb2.SyncCheckoutRequest(account_id=account_id, session_id=session_id), timeout=30
            )

    async def sync_subscription(self, account_id: str) -> billing_pb2.BillingStatus:
        with translated("billing"):
            return await self._billing.SyncSubscription(
                billing_pb2.GetBillingRequest(account_id=account_id), timeout=30
            )

    async def stripe_webhook(self, payload: bytes, signature: str) -> billing_pb2.WebhookOutcome:
        with translated("billing"):
            return await self._billing.HandleWebhook(
                billing_pb2.WebhookDelivery(payload=payload, signature=signature), timeout=30
            )

    async def health(self) -> dict[str, str]:
        """Each service's grpc.health.v1 status: "ok", or why not."""
        names = list(self._channels)
        statuses = await asyncio.gather(*(health_status(self._channels[n]) for n in names))
        return dict(zip(names, statuses, strict=True))
