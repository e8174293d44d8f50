"""The dashboard's static files go gzipped to a browser that accepts it; nothing else is compressed."""

from types import SimpleNamespace
from typing import cast

from litestar.testing import TestClient

from orqen_edge.app import create_app
from orqen_edge.runtime import Runtime


def test_static_files_are_gzipped_for_browsers_that_accept_it() -> None:
    runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024)))
    with TestClient(create_app(runtime)) as client:
        script = "/dashboard/static/vendor/chartjs/chart.umd.min.js"
        gzipped = client.get(script, headers={"accept-encoding": "gzip"})
        assert gzipped.status_code == 200 and gzipped.headers["content-encoding"] == "gzip"
        assert int(gzipped.headers["content-length"]) < len(gzipped.content) / 2  # decoded by the client
        plain = client.get(script, headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == gzipped.content
        # The OpenAPI document (like every API answer) is not compressed.
        schema = client.get("/schema/openapi.json", headers={"accept-encoding": "gzip"})
        assert schema.status_code == 200 and "content-encoding" not in schema.headers
