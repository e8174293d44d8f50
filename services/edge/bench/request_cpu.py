"""What the edge's per-request pieces cost in CPU, in process: decoding and encoding a chat body
(a small one and one with 500 real tools), one access-log line, one traced request's span, and a
chat route's dependency resolution in Litestar.

Each figure is the best of 5 runs, CPU time (user + system) per call. The script measures the
orqen_common it imports, so a before/after is the same command with another tree first on the path:
    PYTHONPATH=tests-e2e:services/common .venv/bin/python services/edge/bench/request_cpu.py
    PYTHONPATH=tests-e2e:/path/to/other/tree/services/common .venv/bin/python services/edge/bench/request_cpu.py
The span is measured as `configure_tracing` sets tracing up without OTEL_EXPORTER_OTLP_ENDPOINT.
The route figure compares two ways of writing one route in the same Litestar, so it does not
depend on the tree. The figures move with the machine's load (say so next to them).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from litestar import Litestar, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from opentelemetry import propagate, trace

import orqen_common
from bench.large_toolset import large_toolset
from orqen_common.formats.openai import decode_request, encode_request
from orqen_common.logging import configure_logging
from orqen_common.tracing import configure_tracing

SMALL = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":64}'
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_call_us(call: Callable[[], object], count: int) -> float:
    """CPU per call, best of 5 runs of `count` calls."""
    call()
    runs = []
    for _ in range(5):
        started = cpu_seconds()
        for _ in range(count):
            call()
        runs.append((cpu_seconds() - started) / count)
    return min(runs) * 1e6


def span_us() -> float:
    """Extract the caller's trace context, open the server span, inject it for the next hop."""
    configure_tracing("edge")
    tracer = trace.get_tracer(__name__)
    headers = {"traceparent": TRACEPARENT}

    def one() -> None:
        with tracer.start_as_current_span("POST /v1/chat/completions", context=propagate.extract(headers)):
            propagate.inject({})

    return per_call_us(one, 20_000)


def log_line_us() -> float:
    """One access-log line as the edge writes it (JSON), to /dev/null."""
    configure_logging("edge", "INFO", "json")
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    try:
        log = structlog.get_logger("orqen_edge.access")
        return per_call_us(lambda: log.info("request", method="POST", path="/v1/chat", status=200, ms=4.2), 20_000)
    finally:
        os.dup2(saved, 2)


def _runtime(state: State) -> object:
    return state.runtime


async def _principal(request: Request[Any, Any, Any], runtime: NamedDependency[object]) -> str:
    return request.headers.get("authorization", "")


@post("/dependencies", status_code=200)
async def _with_dependencies(
    request: Request[Any, Any, Any], runtime: NamedDependency[object], principal: NamedDependency[str]
) -> Response[bytes]:
    return Response(b"{}", media_type="application/json")


@post("/in-handler", status_code=200)
async def _in_handler(request: Request[Any, Any, Any]) -> Response[bytes]:
    await _principal(request, request.app.state.runtime)
    return Response(b"{}", media_type="application/json")


def route_us(path: str) -> float:
    """One POST through Litestar to a route that gets a runtime and a caller (the chat routes' two)."""
    app = Litestar(
        [_with_dependencies, _in_handler],
        state=State({"runtime": object()}),
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(_principal),
        },
        logging_config=None,
    )
    headers = [(b"authorization", b"Bearer sk-orq-x"), (b"content-type", b"application/json")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {"path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        return per_call_us(lambda: loop.run_until_complete(app({**scope, "state": {}}, receive, send)), 5_000)
    finally:
        loop.close()


def main() -> None:
    tools, question = large_toolset(500)
    large = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], "tools": tools})
    request = decode_request(large)
    print(f"orqen_common from {os.path.dirname(orqen_common.__file__)}; load average {os.getloadavg()[0]:.1f}")
    figures = {
        f"decode_request, 500 tools ({len(large) / 1024:.0f} KB)": per_call_us(lambda: decode_request(large), 200),
        "encode_request, 500 tools": per_call_us(lambda: encode_request(request), 200),
        "decode_request, small body": per_call_us(lambda: decode_request(SMALL), 20_000),
        "access-log line": log_line_us(),
        "traced request (extract, span, inject)": span_us(),
        "route, runtime and caller as dependencies": route_us("/dependencies"),
        "route, runtime and caller in the handler": route_us("/in-handler"),
    }
    for what, micros in figures.items():
        print(f"{what:<44}{micros:8.1f} us CPU")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
