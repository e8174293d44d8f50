"""OpenTelemetry tracing across the HTTP and gRPC hops; the exporter is off unless configured."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure_tracing(service: str) -> None:
    """Install a tracer provider; export over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    Without an exporter the spans still exist, so trace context propagates through
    services that do export.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": f"orqen-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
