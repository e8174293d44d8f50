"""What the OpenAPI document (/schema/openapi.json) says beyond the handlers' signatures.

Handlers read their JSON bodies themselves, after authentication, with the strict decoders of
orqen_edge.request_body; `json_body` documents the same typed shape they decode (msgspec's own
JSON Schema of it, so the document cannot drift from the decoder). `errors` documents the error
responses an operation can answer, in its route family's real body (orqen_edge.errors).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    SecurityRequirement,
    SecurityScheme,
)

from orqen_edge.errors import ERROR_SHAPES

_SCHEMA_REF = "#/components/schemas/{name}"

# Who may call an operation, named in each operation's `security`.
API_KEY: list[SecurityRequirement] = [{"apiKey": []}, {"anthropicApiKey": []}]
DASHBOARD_SESSION: list[SecurityRequirement] = [{"dashboardSession": []}]
API_KEY_OR_SESSION = [*API_KEY, *DASHBOARD_SESSION]
_SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "apiKey": SecurityScheme(
        type="http", scheme="bearer", description="An Orqen API key: `Authorization: Bearer sk-orq-…`."
    ),
    "anthropicApiKey": SecurityScheme(
        type="apiKey", name="x-api-key", security_scheme_in="header", description="The Anthropic SDK's header."
    ),
    "dashboardSession": SecurityScheme(
        type="apiKey",
        name="orqen_session",
        security_scheme_in="cookie",
        description="The dashboard session cookie (POST /v1/dashboard/login); state-changing calls also send "
        "its CSRF token in `X-CSRF-Token`.",
    ),
}

# When each status is answered (docs/api.md "Errors" has the whole table).
_WHEN = {
    400: "Invalid request: a body or parameter that does not fit, or a setup precondition.",
    401: "Missing or invalid credentials.",
    403: "An API key on a dashboard-session route, a missing or wrong CSRF token, or a model the API key may "
    "not use (`model_not_allowed`).",
    404: "Unknown id (or another account's), model or route.",
    409: "It exists already (an owner's email).",
    413: "Request body too large.",
    415: "Content-Type is not application/json.",
    429: "A rate limit, a spent budget (`budget_exceeded`, Retry-After until it resets), too many failed logins, "
    "or an upstream's 429.",
    500: "An unexpected error; the message carries the request id.",
    501: "Stripe endpoints while billing runs in local mode.",
    502: "The provider failed or could not be reached.",
    503: "An Orqen service, or the provider, is unavailable.",
    504: "The provider timed out.",
}

# The statuses of the kinds of operation, to build `errors(...)` from.
AUTHENTICATED = (400, 401, 500, 503)
BODY = (400, 413, 415)
SESSION = (*AUTHENTICATED, 403)
PROVIDER = (400, 401, 403, 404, 413, 415, 429, 500, 502, 503, 504)


def errors(*statuses: int, ingress: str = "openai") -> dict[int, ResponseSpec]:
    """The error responses of an operation, in its route family's body (`ingress` as errors.ingress_of)."""
    shape = ERROR_SHAPES[ingress]
    return {
        status: ResponseSpec(data_container=shape, description=_WHEN[status], generate_examples=False)
        for status in sorted(set(statuses))
    }


@dataclass
class JsonBodyOperation(Operation):
    """An operation whose handler decodes a JSON body of type `body` itself."""

    body: ClassVar[type[msgspec.Struct]]

    def __post_init__(self) -> None:
        (schema,), _ = msgspec.json.schema_components([self.body], ref_template=_SCHEMA_REF)
        self.request_body = RequestBody(
            required=True, content={"application/json": OpenAPIMediaType(schema=Reference(ref=schema["$ref"]))}
        )


def json_body(body: type[msgspec.Struct]) -> type[Operation]:
    """The `operation_class` of a route whose handler decodes a JSON body of type `body`."""
    return type(f"{body.__name__}BodyOperation", (JsonBodyOperation,), {"body": body})


# Swagger UI from the dashboard's vendored copy (swagger-ui-dist), never a CDN: /schema works air-gapped.
_SWAGGER = "/dashboard/static/vendor/swagger-ui/"


def config() -> OpenAPIConfig:
    """The document's config; `add_body_schemas` completes it once the app exists.
    /schema and /schema/swagger show Swagger UI; /schema/openapi.json is the document."""
    return OpenAPIConfig(
        title="Orqen",
        version="0.1.0",
        path="/schema",
        components=Components(security_schemes=_SECURITY_SCHEMES),
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=_SWAGGER + "swagger-ui-bundle.js",
                css_url=_SWAGGER + "swagger-ui.css",
                standalone_preset_js_url=_SWAGGER + "swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{_SWAGGER}favicon-32x32.png'>",
                path=["/", "/swagger"],
            )
        ],
    )


def add_body_schemas(app: Litestar, handlers: Iterable[HTTPRouteHandler]) -> None:
    """Put the schemas of the JSON bodies the app's handlers decode (and of what they hold) into the
    document's components; Litestar generates the components of the rest from the signatures."""
    bodies = [
        handler.operation_class.body for handler in handlers if issubclass(handler.operation_class, JsonBodyOperation)
    ]
    _, schemas = msgspec.json.schema_components(bodies, ref_template=_SCHEMA_REF)
    components = app.openapi_schema.components
    clashing = set(schemas) & set(components.schemas or {})
    if clashing:
        raise RuntimeError(f"OpenAPI component names used twice: {sorted(clashing)}")
    components.schemas = {**(components.schemas or {}), **schemas}
