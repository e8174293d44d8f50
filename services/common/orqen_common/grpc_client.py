"""gRPC channels to the other services: the internal token, the request id and trace context ride along."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
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
    per worker (with 2 workers, 16 channels leave one without any once in 30,000 starts; with 8,
    69% of the time), and spread the calls with `Balancer`.

    Each starts connecting at once: left to connect on its first call, each of the first `count`
    calls would wait for a connection of its own.
    """
    channels = [open_channel(addr, token, own_connection=True) for _ in range(count)]
    for channel in channels:
        channel.get_state(try_to_connect=True)
    return channels


T = TypeVar("T")


class Balancer(Generic[T]):
    """Calls spread over the channels (their stubs, `items`) to groups of worker processes, by worker.

    Taking the channels in turn loads each worker with as many calls as it got connections, and the
    kernel deals those at random: 8 workers over 16 connections give the busiest twice its share at
    the median. So each answer names the worker that made it, its group (one process tree: a
    replica, a pod) and the group's size (`heard`), and a call goes to the worker with the fewest
    calls in flight (the one served longest ago among equals), through its channels in turn. A
    channel not heard from yet counts as a worker of its own; one whose connection moved to another
    worker (a restart) is counted there from its next answer.

    A worker that no connection reached would never be called: 64 connections miss one of 16 workers
    in a quarter of the starts, and a restarted group is dealt the reconnections afresh. So once
    every channel has answered and fewer workers were heard from than the groups heard from hold,
    `more()` opens another channel (a new connection, dealt again), up to `most` channels in all. (A
    group that no connection reached at all is not known, so not sought.)
    """

    def __init__(self, items: Sequence[T], more: Callable[[], T] | None = None, most: int = 0) -> None:
        if not items:
            raise ValueError("Balancer needs at least one item")
        self.items: list[T] = []
        self._worker_of: list[Hashable] = []
        self._channels: dict[Hashable, list[int]] = {}
        self._load: dict[Hashable, int] = {}
        self._served: dict[Hashable, int] = {}
        self._calls = 0
        self._more = more
        self._most = most
        self._group_of: dict[Hashable, tuple[int, int]] = {}  # a worker's group and its size, as it last said
        for item in items:
            self._add(item)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[tuple[T, Callable[[int, int, int], None]]]:
        """The stub to call, and `heard(worker, group, workers)`: who answered, its group and that group's size."""
        self._calls += 1
        reached = (w for w, channels in self._channels.items() if channels)
        worker = min(reached, key=lambda w: (self._load[w], self._served[w]))
        channels = self._channels[worker]
        index = channels[self._calls % len(channels)]
        self._load[worker] += 1
        self._served[worker] = self._calls
        answered: list[tuple[int, int, int]] = []
        try:
            yield self.items[index], lambda worker, group, workers: answered.append((worker, group, workers))
        finally:
            self._load[worker] -= 1
            if answered:
                heard_from, group, workers = answered[-1]
                moved = self._move(index, heard_from)
                told = self._group_of.get(heard_from) != (group, workers)
                self._group_of[heard_from] = (group, workers)
                if moved or told:  # what is reached, or the groups' sizes, changed: nothing else does
                    self._reach_every_worker()
            self._forget(worker)

    def _add(self, item: T) -> None:
        """A channel to count as a worker of its own until it answers."""
        index = len(self.items)
        unheard = ("channel", index)
        self.items.append(item)
        self._worker_of.append(unheard)
        self._channels[unheard] = [index]
        self._load[unheard] = self._served[unheard] = 0

    def _reach_every_worker(self) -> None:
        """Open another channel when every channel answered and some worker of their groups was not among them."""
        if self._more is None or len(self.items) >= self._most:
            return
        reached = [w for w, channels in self._channels.items() if channels]
        if any(isinstance(w, tuple) for w in reached):
            return  # a channel not heard from yet may reach the missing worker
        groups = dict(self._group_of[w] for w in reached if w in self._group_of)
        if len(reached) < sum(groups.values()):
            self._add(self._more())

    def _move(self, index: int, worker: int) -> bool:
        """Count channel `index` as reaching `worker` from now on; whether it reached another before."""
        old = self._worker_of[index]
        if old == worker:
            return False
        self._channels[old].remove(index)
        self._worker_of[index] = worker
        self._channels.setdefault(worker, []).append(index)
        self._load.setdefault(worker, 0)
        self._served.setdefault(worker, self._served[old])  # a worker first heard from was just served
        self._forget(old)
        return True

    def _forget(self, worker: Hashable) -> None:
        """Drop a worker no channel reaches any more, once its last call is back."""
        if not self._channels.get(worker, True) and not self._load[worker]:
            del self._channels[worker], self._load[worker], self._served[worker]
            self._group_of.pop(worker, None)
