"""Every call billing makes to Stripe, through the official SDK, in one place.

Stripe failures leave this module as OrqenError with a message safe to show; the
secret key is never part of a message or a log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import stripe
import structlog

from orqen_billing.settings import BillingSettings
from orqen_common.errors import OrqenError

log = structlog.get_logger(__name__)


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except stripe.InvalidRequestError as err:
        if err.http_status == 404:
            raise OrqenError.of(grpc.StatusCode.NOT_FOUND, f"Stripe does not know that object ({action}).") from None
        log.warning("stripe refused a request", action=action, stripe_message=err.user_message)
        raise OrqenError.of(
            grpc.StatusCode.FAILED_PRECONDITION, f"Stripe refused to {action}: {err.user_message}"
        ) from None
    except (stripe.AuthenticationError, stripe.PermissionError):
        log.error("stripe rejected the configured secret key", action=action)
        raise OrqenError.of(
            grpc.StatusCode.FAILED_PRECONDITION, "Stripe rejected this deployment's Stripe credentials."
        ) from None
    except stripe.StripeError as err:
        log.warning("stripe unavailable", action=action, error=type(err).__name__, http_status=err.http_status)
        raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, f"Stripe is unavailable ({action}); try again.") from None


def _plain(obj: stripe.StripeObject) -> dict[str, Any]:
    return obj.to_dict(recursive=True)


class StripeGateway:
    """The Stripe API (at the configured base URL), with retries on network errors."""

    def __init__(self, settings: BillingSettings) -> None:
        assert settings.stripe_secret_key is not None
        self._http = stripe.HTTPXClient()
        self._client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base},
            http_client=self._http,
            max_network_retries=2,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in the stripe SDK

    async def create_customer(self, account_id: str, email: str) -> str:
        """A Stripe customer for the account; the idempotency key makes a retried create return the same one."""
        params: dict[str, Any] = {"metadata": {"account_id": account_id}}
        if email:
            params["email"] = email
        with _translated("create a customer"):
            customer = await self._client.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"orqen-customer-{account_id}"},
            )
        return str(customer.id)

    async def create_checkout(
        self, account_id: str, customer_id: str, price_id: str, success_url: str, cancel_url: str
    ) -> dict[str, Any]:
        with _translated("start Checkout"):
            session = await self._client.v1.checkout.sessions.create_async(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "client_reference_id": account_id,
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "subscription_data": {"metadata": {"account_id": account_id}},
                    "metadata": {"account_id": account_id},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        return _plain(session)

    async def create_portal(self, customer_id: str, return_url: str) -> dict[str, Any]:
        with _translated("open the customer portal"):
            session = await self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        return _plain(session)

    async def checkout_session(self, session_id: str) -> dict[str, Any]:
        with _translated("read the Checkout session"):
            return _plain(await self._client.v1.checkout.sessions.retrieve_async(session_id))

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        with _translated("read the subscription"):
            return _plain(await self._client.v1.subscriptions.retrieve_async(subscription_id))

    async def subscriptions_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's subscriptions in any status (canceled ones included), as Stripe lists them."""
        with _translated("list subscriptions"):
            page = await self._client.v1.subscriptions.list_async(
                {"customer": customer_id, "status": "all", "limit": 20}
            )
        return [_plain(s) for s in page.data]
