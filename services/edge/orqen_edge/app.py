"""The Litestar application: routes, dependencies, the error table, OpenAPI."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from orqen_common.errors import OrqenError
from orqen_edge import health
from orqen_edge.account import billing as billing_api
from orqen_edge.account import keys as account_keys
from orqen_edge.account import request_log as account
from orqen_edge.account import routing as routing_api
from orqen_edge.account import usage as usage_api
from orqen_edge.anthropic_messages import create_message
from orqen_edge.auth import api_key_principal
from orqen_edge.bedrock_converse import converse
from orqen_edge.dashboard import login as dashboard_api
from orqen_edge.dashboard.auth import dashboard_session
from orqen_edge.errors import handle_http_exception, handle_orqen_error, handle_unexpected
from orqen_edge.openai_chat import chat_completions
from orqen_edge.proxy import routes as proxy_api
from orqen_edge.runtime import Runtime


def _runtime(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def create_app(runtime: Runtime) -> Litestar:
    return Litestar(
        route_handlers=[
            chat_completions,
            create_message,
            converse,
            account.list_requests,
            account.get_request,
            account.billing,
            account_keys.list_keys,
            account_keys.create_key,
            account_keys.revoke_key,
            account_keys.list_providers,
            account_keys.save_provider,
            account_keys.delete_provider,
            routing_api.list_models,
            routing_api.get_model,
            routing_api.routing_models,
            routing_api.routing_models_status,
            routing_api.toggle_model,
            routing_api.get_preferences,
            routing_api.put_preferences,
            routing_api.routing_traces,
            routing_api.routing_calibration,
            routing_api.routing_insights,
            dashboard_api.login,
            dashboard_api.logout,
            dashboard_api.current_session,
            billing_api.create_checkout,
            billing_api.customer_portal,
            billing_api.sync_checkout,
            billing_api.sync_subscription,
            billing_api.stripe_webhook,
            *usage_api.ROUTES,
            health.healthz,
            health.readyz,
            health.metrics,
            *proxy_api.route_handlers(),
        ],
        state=State({"runtime": runtime}),
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(api_key_principal),
            "session": Provide(dashboard_session),
        },
        exception_handlers={
            OrqenError: handle_orqen_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        request_max_body_size=runtime.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Orqen", version="0.1.0", path="/schema"),
        logging_config=None,  # orqen_common.logging already owns the log format
        debug=False,
    )
