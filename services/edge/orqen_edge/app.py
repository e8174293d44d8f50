"""The Litestar application: routes, dependencies, the error table, OpenAPI."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.compression import CompressionMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from orqen_common.errors import OrqenError
from orqen_edge import health, openapi
from orqen_edge.account import billing, budgets, cache, deployments, keys, owners, request_log, routing, usage
from orqen_edge.auth import api_key_principal
from orqen_edge.dashboard import login, pages, web
from orqen_edge.dashboard.auth import dashboard_session
from orqen_edge.errors import handle_http_exception, handle_orqen_error, handle_unexpected
from orqen_edge.ingress.anthropic import create_message
from orqen_edge.ingress.bedrock import converse
from orqen_edge.ingress.openai import chat_completions
from orqen_edge.proxy import routes as proxy_routes
from orqen_edge.runtime import Runtime

# Scripts and styles go gzipped (Chart.js: 210 KB as built, about 70 KB sent). Only those: a
# compressor in front of the SDK routes would hold back their streamed answers.
_STATIC_GZIP = DefineMiddleware(CompressionMiddleware, config=CompressionConfig(backend="gzip", gzip_compress_level=6))


def _runtime(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def create_app(runtime: Runtime) -> Litestar:
    handlers = [
        # SDK ingress
        chat_completions,
        create_message,
        converse,
        # The account API
        *request_log.ROUTES,
        *billing.ROUTES,
        *cache.ROUTES,
        *keys.ROUTES,
        *budgets.ROUTES,
        *deployments.ROUTES,
        *owners.ROUTES,
        *routing.ROUTES,
        *usage.ROUTES,
        # The dashboard's JSON sign-in
        *login.ROUTES,
        # Probes and metrics
        health.healthz,
        health.readyz,
        health.metrics,
        # The proxy families
        *proxy_routes.route_handlers(),
    ]
    # The dashboard: its pages see the signed-in owner as `session` (web.page_session).
    dashboard = [
        Router("/", route_handlers=pages.ROUTES, dependencies=web.PAGE_DEPENDENCIES, include_in_schema=False),
        create_static_files_router(
            web.STATIC_PATH,
            directories=[web.STATIC_DIR],
            cache_control=web.STATIC_CACHE,
            include_in_schema=False,
            middleware=[_STATIC_GZIP],
        ),
    ]
    app = Litestar(
        route_handlers=[*handlers, *dashboard],
        state=State({"runtime": runtime}),
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(api_key_principal),
            "session": Provide(dashboard_session),
        },
        # On a dashboard path these answer HTML pages; everywhere else the caller's SDK-shaped JSON.
        exception_handlers={
            web.SignInRequiredError: web.sign_in_redirect,
            OrqenError: web.or_error_page(handle_orqen_error),
            HTTPException: web.or_error_page(handle_http_exception),
            Exception: web.or_error_page(handle_unexpected),
        },
        template_config=TemplateConfig(
            directory=web.TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=web.configure_templates
        ),
        before_send=[web.add_security_headers],
        request_max_body_size=runtime.settings.max_body_bytes,
        openapi_config=openapi.config(),
        logging_config=None,  # orqen_common.logging already owns the log format
        debug=False,
    )
    openapi.add_body_schemas(app, handlers)
    return app
