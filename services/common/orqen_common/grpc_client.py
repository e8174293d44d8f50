"""gRPC channels to the other services: the internal token, the request id and trace context ride along."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
from opentelemetry import propagate

from orqen_common.context import REQUEST_ID_HEADER, request_id_var

# Chat requests carry images and hundreds of tools; gRPC's 4 MB default is too small.
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def _outgoing_metadata(existing: Any, token: str) -> list[tuple[str, str]]:
    metadata = [(k, v) for k, v in (existing or ())]
    if not any(k == "authorization" for k, _ in metadata):
        metadata.append(("authorization", f"Bearer {token}"))
    request_id = request_id_var.get()
    if request_id:
        metadata.append((REQUEST_ID_HEADER, request_id))
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata.extend(carrier.items())
    return metadata


class _WithMetadata:
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=grpc.aio.Metadata(*_outgoing_metadata(details.metadata, self._token)),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio files an interceptor under the first call type it implements only, so
# each call type needs its own class.
class _UnaryUnaryMetadata(_WithMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamMetadata(_WithMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _StreamStreamMetadata(_WithMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def open_channel(addr: str, token: str, *, own_connection: bool = False) -> grpc.aio.Channel:
    """An insecure channel to `addr` (inside the cluster network) that authenticates as `token`.

    `token` is the internal service token, or an API key for tools and internal teams.
    `own_connection`: never share the connection with another channel (gRPC shares one between
    channels opened with the same arguments).
    """
    options: list[tuple[str, Any]] = [("grpc.keepalive_time_ms", 30_000), *MESSAGE_SIZE_OPTIONS]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.aio.insecure_channel(
        addr,
        interceptors=[_UnaryUnaryMetadata(token), _UnaryStreamMetadata(token), _StreamStreamMetadata(token)],
        options=options,
    )


def open_channels(addr: str, token: str, count: int) -> list[grpc.aio.Channel]:
    """`count` channels to `addr`, each its own connection: for a service of several worker processes.

    A channel is one HTTP/2 connection, and the kernel hands each connection to one of the worker
    processes sharing the service's port (orqen_common.worker_group), so every call of one channel
    lands on one worker. The kernel picks a worker per connection at random: use several channels
    per worker (with 2 workers, 16 channels leave one without any once in 30,000 starts).
    """
    return [open_channel(addr, token, own_connection=True) for _ in range(count)]


T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Each call, the next of `items` in turn: calls spread over the channels of `open_channels`."""

    def __init__(self, items: Sequence[T]) -> None:
        if not items:
            raise ValueError("RoundRobin needs at least one item")
        self.items = list(items)
        self._turns = itertools.cycle(self.items)

    def __call__(self) -> T:
        return next(self._turns)
