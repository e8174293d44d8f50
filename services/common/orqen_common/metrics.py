"""Prometheus metrics shared by the services, and the metrics endpoint of the gRPC services."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

GRPC_REQUESTS = Counter("orqen_grpc_server_requests_total", "gRPC calls served.", ["service", "method", "code"])
GRPC_LATENCY = Histogram("orqen_grpc_server_duration_seconds", "gRPC call duration.", ["service", "method"])
EVENTS_PUBLISHED = Counter("orqen_events_published_total", "Events published to JetStream.", ["subject"])
EVENTS_DROPPED = Counter(
    "orqen_events_dropped_total", "Events dropped because the publish buffer was full.", ["subject"]
)
EVENT_BUFFER_DEPTH = Gauge("orqen_event_buffer_depth", "Events waiting to be published.")
EVENTS_CONSUMED = Counter("orqen_events_consumed_total", "Events processed by a durable consumer.", ["consumer"])
EVENTS_DEAD_LETTERED = Counter(
    "orqen_events_dead_lettered_total",
    "Events a durable consumer could not store and parked on its dead-letter subject.",
    ["consumer"],
)
CONSUMER_PENDING = Gauge(
    "orqen_consumer_pending", "Messages waiting in a durable consumer (queue depth).", ["consumer"]
)

# Each garbage collection's pause, by generation (0, 1, 2): a full collection stops the whole process.
GC_PAUSES = Histogram(
    "orqen_gc_pause_seconds",
    "Garbage collection pauses (every thread of the process stands still).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def start_metrics_server(host: str, port: int) -> None:
    """Serve /metrics on `host`:`port` in a background thread; port 0 disables it."""
    if port:
        start_http_server(port, addr=host)
