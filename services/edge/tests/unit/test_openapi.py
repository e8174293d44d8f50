"""The OpenAPI document describes the API: request bodies, error bodies in each route family's shape."""

from types import SimpleNamespace
from typing import Any, cast

import jsonschema
import pytest
from litestar.testing import TestClient

from orqen_common.errors import INTERNAL, OrqenError, invalid_request
from orqen_edge.app import create_app
from orqen_edge.errors import error_body, ingress_of
from orqen_edge.runtime import Runtime

_SHAPE_OF = {"openai": "OpenAIError", "anthropic": "AnthropicError", "bedrock": "BedrockError"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Building the document needs no connection: only the body limit is read from the runtime.
    runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024)))
    with TestClient(create_app(runtime)) as client:
        spec: dict[str, Any] = client.get("/schema/openapi.json").json()
    return spec


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "delete")
    ]


def test_every_error_response_is_documented_in_its_route_familys_shape(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/readyz":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{_SHAPE_OF[ingress_of(path)]}"}, (method, path, status)
    # Litestar's own {status_code, detail} shape, which the edge never sends, is gone.
    assert "status_code" not in str(document["components"]["schemas"])


def test_authenticated_operations_document_401_and_name_their_credentials(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        if path.startswith(("/v1/", "/v2/", "/v3/", "/model/")) and path not in (
            "/v1/dashboard/login",
            "/v1/dashboard/signup",  # the invitation's token is the credential
            "/v1/billing/webhook",
        ):
            assert "401" in operation["responses"] and operation.get("security"), (method, path)


def test_json_bodies_are_documented_from_the_types_the_handlers_decode(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    bodies = {
        (path, method): operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path, method, operation in _operations(document)
        if "requestBody" in operation
    }
    assert bodies[("/v1/account/keys", "post")] == "KeyCreation"
    assert bodies[("/v1/account/providers", "post")] == "ProviderCredential"
    assert bodies[("/v1/account/routing/preferences", "put")] == "PreferencesUpdate"
    assert bodies[("/v1/account/routing/models/toggle", "post")] == "ModelToggle"
    assert bodies[("/v1/billing/sync-checkout", "post")] == "CheckoutSync"
    assert bodies[("/v1/dashboard/login", "post")] == "Credentials"
    assert bodies[("/v1/chat/completions", "post")] == "ChatRequest"
    assert bodies[("/v1/messages", "post")] == "MessagesRequest"
    assert bodies[("/model/{model_path}", "post")] == "ConverseRequest"
    assert all(name in schemas for name in bodies.values())
    assert schemas["ProviderCredential"]["required"] == ["provider"]


@pytest.mark.parametrize("ingress", ["openai", "anthropic", "bedrock"])
def test_the_bodies_the_edge_renders_fit_the_documented_shapes(document: dict[str, Any], ingress: str) -> None:
    schemas = document["components"]["schemas"]
    resolver = {"components": {"schemas": schemas}}
    schema = {**schemas[_SHAPE_OF[ingress]], "components": resolver["components"]}
    for err in (invalid_request("bad"), OrqenError(INTERNAL, "boom")):
        jsonschema.validate(error_body(err, ingress), schema)


def test_typed_answers_are_documented_by_their_types(document: dict[str, Any]) -> None:
    def answer(path: str, method: str, status: str) -> Any:
        return document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]

    assert answer("/v1/account/keys", "post", "201") == {"$ref": "#/components/schemas/CreatedKey"}
    assert answer("/v1/models", "get", "200") == {"$ref": "#/components/schemas/ModelList"}
    assert answer("/v1/models/{model}", "get", "200") == {"$ref": "#/components/schemas/Model"}
    assert answer("/v1/billing/webhook", "post", "200") == {"$ref": "#/components/schemas/WebhookReceipt"}
