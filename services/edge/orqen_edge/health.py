"""Probes and metrics: /healthz (alive), /readyz (every dependency answers), /metrics."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from orqen_edge.runtime import Runtime

# A round trip to JetStream, not the socket's state: a frozen server keeps its connections open.
_NATS_TIMEOUT_SECONDS = 1.0


@get("/healthz", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: Redis, NATS and the four gRPC services",
    responses={
        503: ResponseSpec(
            dict[str, object], description="Not ready: `not_ready` names what is not.", generate_examples=False
        )
    },
)
async def readyz(runtime: NamedDependency[Runtime]) -> Response[dict[str, object]]:
    async def redis_check() -> str:
        try:
            await asyncio.wait_for(runtime.redis.ping(), 1.5)
            return "ok"
        except (TimeoutError, RedisError, OSError) as err:
            return f"unavailable ({err.__class__.__name__})"

    async def nats_check() -> str:
        return "ok" if await runtime.publisher.answers(_NATS_TIMEOUT_SECONDS) else "unavailable"

    services, redis_status, nats_status = await asyncio.gather(runtime.downstream.health(), redis_check(), nats_check())
    checks = {**services, "redis": redis_status, "nats": nats_status}
    ready = all(v == "ok" for v in checks.values())
    not_ready = sorted(k for k, v in checks.items() if v != "ok")
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if not_ready:
        body["not_ready"] = not_ready
    return Response(body, status_code=200 if ready else 503)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
