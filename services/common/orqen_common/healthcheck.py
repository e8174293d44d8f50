"""gRPC health checks: one function for /readyz, and `python -m orqen_common.healthcheck host:port`.

The command exits 0 when the service reports SERVING; container healthchecks use it
because no grpc_health_probe binary is installed in the images.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def health_status(channel: grpc.aio.Channel, deadline: float = 1.5) -> str:
    """ "ok" when the service behind `channel` is SERVING, otherwise why not."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        # The typeshed stubs of grpcio-health-checking omit HealthStub's methods.
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=deadline)  # type: ignore[attr-defined]
    except grpc.aio.AioRpcError as err:
        return f"unavailable ({err.code().name})"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)).lower()
    return "ok"


async def _check(addr: str) -> str:
    async with grpc.aio.insecure_channel(addr) as channel:
        return await health_status(channel, deadline=3)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orqen_common.healthcheck HOST:PORT", file=sys.stderr)
        return 2
    status = asyncio.run(_check(args[0]))
    print(status)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
