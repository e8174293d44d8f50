"""A trace context that arrives at the edge goes on to dispatch, whether or not spans are exported."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from orqen.v1 import dispatch_pb2, dispatch_pb2_grpc
from orqen_common import tracing
from orqen_common.grpc_client import open_channel
from orqen_edge.middleware import RequestContextMiddleware

TOKEN = "internal-token"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class FakeDispatch(dispatch_pb2_grpc.DispatchServicer):
    """Notes the metadata each Complete call arrived with."""

    metadata: list[dict[str, str]] = field(default_factory=list)

    async def Complete(  # the RPC's name
        self,
        request: dispatch_pb2.CompleteRequest,
        context: grpc.aio.ServicerContext[dispatch_pb2.CompleteRequest, dispatch_pb2.CompleteResponse],
    ) -> dispatch_pb2.CompleteResponse:
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return dispatch_pb2.CompleteResponse()


def _reset_tracer_provider() -> None:
    # The global provider can be set once per process; OpenTelemetry's own tests reset it like this.
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[InMemorySpanExporter | None]:
    """configure_tracing as a service runs it, with OTLP export configured (spans kept in memory) or not."""
    _reset_tracer_provider()
    exporter: InMemorySpanExporter | None = None
    if request.param:
        exporter = InMemorySpanExporter()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4317")
        monkeypatch.setattr("opentelemetry.exporter.otlp.proto.grpc.trace_exporter.OTLPSpanExporter", lambda: exporter)
        # Exported at once rather than by the batch processor's thread.
        monkeypatch.setattr("opentelemetry.sdk.trace.export.BatchSpanProcessor", SimpleSpanProcessor)
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    tracing.configure_tracing("edge")
    yield exporter
    _reset_tracer_provider()


@pytest.mark.parametrize("exported", [False, True], ids=["no exporter", "exporter"], indirect=True)
async def test_an_incoming_traceparent_reaches_dispatchs_metadata_with_its_trace_id(
    exported: InMemorySpanExporter | None,
) -> None:
    dispatch = FakeDispatch()
    server = grpc.aio.server()
    dispatch_pb2_grpc.add_DispatchServicer_to_server(dispatch, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", TOKEN)
    recording: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """An edge route that calls dispatch, as the chat routes do."""
        recording.append(trace.get_current_span().is_recording())
        await dispatch_pb2_grpc.DispatchStub(channel).Complete(dispatch_pb2.CompleteRequest())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    try:
        transport = httpx.ASGITransport(app=RequestContextMiddleware(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            answer = await client.post("/v1/chat/completions", headers={"traceparent": TRACEPARENT})
            assert answer.status_code == 200
            # Without a trace context of its own, the edge starts none downstream when it exports nothing.
            await client.post("/v1/chat/completions")
    finally:
        await channel.close()
        await server.stop(None)

    sent = dispatch.metadata[0]["traceparent"]
    assert sent.split("-")[1] == TRACE_ID
    if exported is None:
        assert sent == TRACEPARENT  # a non-recording span hands on the context it was given
        assert "traceparent" not in dispatch.metadata[1]
        assert recording == [False, False]
    else:
        assert sent.split("-")[2] != TRACEPARENT.split("-")[2]  # the edge's own span is the parent now
        first = exported.get_finished_spans()[0]  # the edge's span of the first request
        assert (first.name, format(first.context.trace_id, "032x")) == ("POST /v1/chat/completions", TRACE_ID)
        assert "traceparent" in dispatch.metadata[1]
        assert recording == [True, True]
