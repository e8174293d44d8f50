"""gRPC channels to the other services: the internal token, the request id and trace context ride along."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
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
    """A multi-callable whose calls carry the token, the request id and the trace context.

    Added here rather than by client interceptors: grpc.aio runs each intercepted call in a task of
    its own and reads its answers through one more layer, about 40 µs of CPU a call (a Stream
    call from the edge to dispatch, measured alone).
    """

    __slots__ = ("_call", "_token")

    def __init__(self, call: Any, token: str) -> None:
        self._call = call
        self._token = token

    def __call__(self, request: Any, *, metadata: Any = None, **options: Any) -> Any:
        return self._call(request, metadata=_outgoing_metadata(metadata, self._token), **options)


class _Channel(grpc.aio.Channel):
    """A channel whose every call authenticates as `token` and carries the caller's context."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._channel = channel
        self._token = token

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.unary_unary(method, *args, **kwargs), self._token)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.unary_stream(method, *args, **kwargs), self._token)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.stream_unary(method, *args, **kwargs), self._token)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _WithMetadata(self._channel.stream_stream(method, *args, **kwargs), self._token)

    async def __aenter__(self) -> _Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close()

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()


def open_channel(addr: str, token: str, *, own_connection: bool = False) -> grpc.aio.Channel:
    """An insecure channel to `addr` (inside the cluster network) that authenticates as `token`.

    `token` is the internal service token, or an API key for tools and internal teams.
    `own_connection`: never share the connection with another channel (gRPC shares one between
    channels opened with the same arguments).
    """
    options: list[tuple[str, Any]] = [("grpc.keepalive_time_ms", 30_000), *MESSAGE_SIZE_OPTIONS]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return _Channel(grpc.aio.insecure_channel(addr, options=options), token)


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
