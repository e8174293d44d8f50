"""OpenTelemetry tracing across the HTTP and gRPC hops; the exporter is off unless configured."""

from __future__ import annotations

import os

from opentelemetry import trace


def configure_tracing(service: str) -> None:
    """Record and export spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; else record none.

    Without an exporter the global tracer provider stays OpenTelemetry's default, whose spans are
    non-recording: a recording SDK span nobody exports cost about 16 us of Python, several times per
    request. A non-recording span still carries the context it was started in, so a trace context
    that arrives (`traceparent`) goes on to the next hop unchanged, through services that do export.
    """
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"orqen-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
