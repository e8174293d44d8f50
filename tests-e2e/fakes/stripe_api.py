"""A Stripe API fake for tests: localstripe, plus the two resources it lacks.

localstripe (PyPI) fakes customers, plans, subscriptions, invoices and payment methods
with state, and signs and sends webhooks. It has no Checkout sessions
(`/v1/checkout/sessions`) and no customer portal (`/v1/billing_portal/sessions`); this
module adds those two in Stripe's wire format, on top of localstripe's own objects, plus
one test-only route standing in for the customer paying on Stripe's hosted page:
`POST /_fake/checkout/sessions/{id}/complete` attaches a test card, subscribes the
customer to the session's price (through localstripe, which then fires
`customer.subscription.created` and `invoice.paid` webhooks) and completes the session.
The hosted pages a browser is sent to are there too, as plain HTML: the Checkout page
(`url` of a session; its Pay button does what the route above does, then redirects to the
session's success_url as Stripe does) and the customer portal (a link back to return_url).

Run it with `python -m fakes.stripe_api --port N` (it binds 127.0.0.1); tests use `StripeFake`.
"""

from __future__ import annotations

import argparse
import html
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from orqen_stack.procs import free_port

SECRET_KEY = "sk_test_orqen_fake"
PRO_PRICE_ID = "price_orqen_pro"
PRO_PRICE_CENTS = 4900


class StripeFake:
    """The fake in a subprocess on a free 127.0.0.1 port, with the Pro price created."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StripeFake:
        pythonpath = os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fakes.stripe_api", "--port", str(self.port)],
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/v1/customers", headers=self.headers, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError("the Stripe fake did not start") from None
                time.sleep(0.1)
        self.post(
            "/v1/plans",
            {
                "id": PRO_PRICE_ID,
                "amount": str(PRO_PRICE_CENTS),
                "currency": "usd",
                "interval": "month",
                "product[name]": "Orqen Pro",
            },
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SECRET_KEY}"}

    def post(self, path: str, data: dict[str, str] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}{path}", data=data or {}, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json() if response.content.strip() else {}

    def delete(self, path: str) -> dict[str, Any]:
        response = httpx.delete(f"{self.url}{path}", headers=self.headers, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def complete_checkout(self, session_id: str, card: str = "pm_card_visa") -> dict[str, Any]:
        """What the customer paying on the hosted Checkout page does: the completed session."""
        return self.post(f"/_fake/checkout/sessions/{session_id}/complete", {"payment_method": card})

    def send_webhooks_to(self, url: str, secret: str) -> None:
        """localstripe signs every later event with `secret` and POSTs it to `url`."""
        self.post("/_config/webhooks/orqen", {"url": url, "secret": secret})


def serve(port: int) -> None:  # pragma: no cover - runs in the subprocess
    """Build the extended localstripe app and serve it on 127.0.0.1:`port` until killed."""
    from aiohttp import web
    from localstripe import server
    from localstripe.errors import UserError
    from localstripe.resources import Customer, PaymentMethod, Plan, Store, StripeObject, Subscription

    # localstripe pickles its whole store to /tmp/localstripe.pickle after every write: one path
    # shared by every instance on the machine. Each fake keeps its state in memory only.
    Store.dump_to_disk = lambda self: None

    class CheckoutSession(StripeObject):  # type: ignore[misc]
        """Stripe's `checkout.session`, subscription mode only (what Orqen uses)."""

        object = "checkout.session"
        _id_prefix = "cs_test_"

        def __init__(
            self,
            mode: str | None = None,
            customer: str | None = None,
            client_reference_id: str | None = None,
            line_items: list[dict[str, Any]] | None = None,
            subscription_data: dict[str, Any] | None = None,
            metadata: dict[str, str] | None = None,
            success_url: str | None = None,
            cancel_url: str | None = None,
            **kwargs: Any,
        ) -> None:
            if kwargs:
                raise UserError(400, "Received unknown parameter: " + ", ".join(kwargs))
            if mode != "subscription":
                raise UserError(400, "This fake supports mode=subscription only")
            if not success_url:
                raise UserError(400, "Missing required param: success_url.")
            if not customer:
                raise UserError(400, "Missing required param: customer.")
            Customer._api_retrieve(customer)  # 404 for an unknown customer, as Stripe
            if not line_items or len(line_items) != 1 or not line_items[0].get("price"):
                raise UserError(400, "line_items must hold one item with a price")
            Plan._api_retrieve(line_items[0]["price"])  # legacy Plans are Prices to Stripe
            super().__init__()
            self.mode = mode
            self.customer = customer
            self.client_reference_id = client_reference_id
            self.metadata = metadata or {}
            self.success_url = success_url
            self.cancel_url = cancel_url
            self.status = "open"
            self.payment_status = "unpaid"
            self.subscription: str | None = None
            self.url = f"{base_url}/c/pay/{self.id}"
            self.expires_at = self.created + 24 * 3600
            self._price = line_items[0]["price"]
            self._subscription_metadata = (subscription_data or {}).get("metadata") or {}

        @classmethod
        def _api_complete(cls, id: str, payment_method: str = "pm_card_visa", **kwargs: Any) -> CheckoutSession:
            session: CheckoutSession = cls._api_retrieve(id)
            if session.status != "open":
                raise UserError(400, "This Checkout session is not open")
            card = PaymentMethod._api_retrieve(payment_method)
            PaymentMethod._api_attach(card.id, customer=session.customer)
            Customer._api_update(session.customer, invoice_settings={"default_payment_method": card.id})
            subscription = Subscription._api_create(
                customer=session.customer, items=[{"plan": session._price}], metadata=session._subscription_metadata
            )
            session.subscription = subscription.id
            session.status = "complete"
            session.payment_status = "paid"
            return session

    class PortalSession(StripeObject):  # type: ignore[misc]
        """Stripe's `billing_portal.session`."""

        object = "billing_portal.session"
        _id_prefix = "bps_"

        def __init__(self, customer: str | None = None, return_url: str | None = None, **kwargs: Any) -> None:
            if kwargs:
                raise UserError(400, "Received unknown parameter: " + ", ".join(kwargs))
            if not customer:
                raise UserError(400, "Missing required param: customer.")
            Customer._api_retrieve(customer)
            super().__init__()
            self.customer = customer
            self.return_url = return_url
            self.url = f"{base_url}/p/session/{self.id}"

    def hosted_page(title: str, body: str) -> web.Response:
        return web.Response(
            text=f"<!doctype html><html><head><title>{html.escape(title)}</title>"
            # No favicon request: it would be one more call without a key.
            f'<link rel="icon" href="data:,"></head><body>{body}</body></html>',
            content_type="text/html",
        )

    async def checkout_page(request: web.Request) -> web.Response:
        session = CheckoutSession._api_retrieve(request.match_info["id"])
        return hosted_page(
            "Stripe Checkout (fake)",
            f"<h1>Subscribe to {html.escape(session._price)}</h1>"
            f'<form method="post"><button type="submit" id="pay">Pay</button></form>'
            f'<a href="{html.escape(session.cancel_url or "")}" id="cancel">Cancel</a>',
        )

    async def checkout_pay(request: web.Request) -> web.Response:
        session = CheckoutSession._api_complete(request.match_info["id"])
        raise web.HTTPSeeOther(session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id))

    async def portal_page(request: web.Request) -> web.Response:
        session = PortalSession._api_retrieve(request.match_info["id"])
        back = html.escape(session.return_url or "")
        return hosted_page("Customer portal (fake)", f'<h1>Your subscription</h1><a href="{back}" id="back">Return</a>')

    @web.middleware
    async def hosted_pages_need_no_key(request: web.Request, handler: Any) -> web.StreamResponse:
        """Stripe serves its hosted pages to the customer's browser, which holds no API key."""
        if request.path.startswith(("/c/pay/", "/p/session/")):
            request = request.clone(headers={**request.headers, "Authorization": f"Bearer {SECRET_KEY}"})
        return await handler(request)

    base_url = f"http://127.0.0.1:{port}"
    app = server.app
    app.middlewares.insert(0, hosted_pages_need_no_key)
    app.router.add_post("/v1/checkout/sessions", server.api_create(CheckoutSession, ""))
    app.router.add_get("/v1/checkout/sessions/{id}", server.api_retrieve(CheckoutSession, ""))
    app.router.add_post("/v1/billing_portal/sessions", server.api_create(PortalSession, ""))
    app.router.add_post("/_fake/checkout/sessions/{id}/complete", server.api_extra(CheckoutSession._api_complete, ""))
    app.router.add_get("/c/pay/{id}", checkout_page)
    app.router.add_post("/c/pay/{id}", checkout_pay)
    app.router.add_get("/p/session/{id}", portal_page)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Stripe API fake (localstripe + Checkout + portal).")
    parser.add_argument("--port", type=int, default=8420)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
