"""The OpenAPI document describes the load-balanced models' routes and their body."""

from types import SimpleNamespace
from typing import Any, cast

from litestar.testing import TestClient

from orqen_edge.app import create_app
from orqen_edge.runtime import Runtime


def test_the_deployment_routes_and_body_are_documented() -> None:
    runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024)))
    with TestClient(create_app(runtime)) as client:
        document: dict[str, Any] = client.get("/schema/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert set(paths["/v1/account/providers/deployments"]) == {"get"}
    one = paths["/v1/account/providers/deployments/{model}"]
    assert set(one) == {"put", "delete"}
    body = one["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/BalancedModelBody"
    balanced = schemas["BalancedModelBody"]
    assert balanced["required"] == ["deployments"]
    assert set(balanced["properties"]["strategy"]["enum"]) == {"weighted", "least_inflight", "lowest_latency"}
    deployment = schemas["DeploymentBody"]
    assert sorted(deployment["required"]) == ["name", "provider"]
    assert deployment["properties"]["weight"]["minimum"] == 1 and deployment["properties"]["weight"]["maximum"] == 1000
    assert {"400", "401"} <= set(one["put"]["responses"]) and "404" in one["delete"]["responses"]
