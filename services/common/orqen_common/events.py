"""Events over NATS JetStream: one stream per stack, a buffered publisher, durable consumers.

Subjects are `<prefix>.<name>` (e.g. `orqen.request.completed`); the stream is
`<PREFIX>_EVENTS` and durable consumers `<prefix>_<name>`, so several stacks can share
one NATS server. Every message carries `Nats-Msg-Id` (the request id): JetStream drops
duplicates inside its window and consumers key on the id, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from orqen_common import metrics

REQUEST_COMPLETED = "request.completed"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EventNames:
    """Subject, stream and consumer names of one stack, derived from its prefix."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    def subject(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def durable(self, consumer: str) -> str:
        return f"{self.prefix}_{consumer}"


async def connect(url: str, name: str) -> NatsClient:
    """Connect to NATS, reconnecting forever after the first success."""
    return await nats.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
    )


async def ensure_stream(js: JetStreamContext, names: EventNames) -> None:
    """Create the stack's stream if missing (idempotent across services and restarts)."""
    config = StreamConfig(
        name=names.stream,
        subjects=[f"{names.prefix}.>"],
        max_age=14 * 24 * 3600,
        duplicate_window=120,
    )
    try:
        await js.stream_info(names.stream)
    except NotFoundError:
        with contextlib.suppress(BadRequestError):  # another service created it first
            await js.add_stream(config)


@dataclass(slots=True)
class _Pending:
    subject: str
    payload: bytes
    msg_id: str


class EventPublisher:
    """Publishes events without ever blocking the request path.

    Events go into a bounded buffer; one task publishes them in order and retries
    while NATS is unreachable. When the buffer is full the event is dropped, counted
    in `orqen_events_dropped_total` and logged, never silently.
    """

    def __init__(self, url: str, names: EventNames, client_name: str, max_buffer: int = 10_000) -> None:
        self._url = url
        self._names = names
        self._client_name = client_name
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_buffer)
        self._nc: NatsClient | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def answers(self, within_seconds: float) -> bool:
        """Whether JetStream answers a request (its account info) within `within_seconds`.

        `connected` alone stays true while the server is frozen (the socket is still open). A
        request, unlike a flush, forgets its reply slot when it times out, so a late answer
        after a thaw is simply dropped.
        """
        if self._nc is None or not self._nc.is_connected:
            return False
        try:
            await self._nc.jetstream(timeout=within_seconds).account_info()
        except nats.errors.Error:  # timeouts and JetStream's own errors alike
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    def publish(self, name: str, payload: bytes, msg_id: str) -> None:
        subject = self._names.subject(name)
        try:
            self._queue.put_nowait(_Pending(subject, payload, msg_id))
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.labels(subject).inc()
            log.error("event buffer full, event dropped", subject=subject, msg_id=msg_id)
        metrics.EVENT_BUFFER_DEPTH.set(self._queue.qsize())

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self._nc is None:
                    self._nc = await connect(self._url, self._client_name)
                    await ensure_stream(self._nc.jetstream(), self._names)
                js = self._nc.jetstream()
                item = await self._queue.get()
                while True:
                    try:
                        await js.publish(item.subject, item.payload, timeout=5, headers={"Nats-Msg-Id": item.msg_id})
                        break
                    except (TimeoutError, nats.errors.Error) as err:
                        log.warning("event publish failed, retrying", subject=item.subject, error=repr(err))
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                backoff = 0.2
                metrics.EVENTS_PUBLISHED.labels(item.subject).inc()
                metrics.EVENT_BUFFER_DEPTH.set(self._queue.qsize())
                self._queue.task_done()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # connection failures before the first success
                log.warning("NATS unavailable, events are buffered", error=repr(err), buffered=self._queue.qsize())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self, grace: float) -> None:
        """Publish what is buffered (for up to `grace` seconds), then drain the connection."""
        if self._queue.qsize():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace)
        if self._queue.qsize():
            log.error("events still buffered at shutdown were dropped", count=self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await close_connection(self._nc)


BatchHandler = Callable[[Sequence[Msg]], Awaitable[None]]


class DurableConsumer:
    """Feeds batches of one subject to `handler`; acks only after the handler returns.

    A crash between the handler's commit and the ack means redelivery, which the
    handler absorbs by keying on the request id. A failing handler leaves the batch
    unacked; JetStream redelivers it after `ack_wait`.
    """

    def __init__(
        self,
        url: str,
        names: EventNames,
        consumer: str,
        event: str,
        handler: BatchHandler,
        *,
        batch: int = 500,
        max_wait: float = 0.5,
        ack_wait: float = 30.0,
    ) -> None:
        self._url = url
        self._names = names
        self._durable = names.durable(consumer)
        self._subject = names.subject(event)
        self._handler = handler
        self._batch = batch
        self._max_wait = max_wait
        self._ack_wait = ack_wait
        self._nc: NatsClient | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, surviving NATS restarts and handler failures."""
        while not stop.is_set():
            try:
                await self._consume(stop)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("consumer interrupted, retrying", consumer=self._durable, error=repr(err))
                await _sleep_or_stop(stop, 1.0)
        await close_connection(self._nc)

    async def _consume(self, stop: asyncio.Event) -> None:
        if self._nc is None:
            self._nc = await connect(self._url, self._durable)
        js = self._nc.jetstream()
        await ensure_stream(js, self._names)
        sub = await js.pull_subscribe(
            self._subject,
            durable=self._durable,
            stream=self._names.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_ack_pending=self._batch * 4,
            ),
        )
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self._batch, timeout=self._max_wait)
            except (TimeoutError, nats.errors.TimeoutError):
                await self._report_pending(sub)
                continue
            try:
                await self._handler(msgs)
            except Exception:
                log.exception("event handler failed; batch will be redelivered", consumer=self._durable, size=len(msgs))
                for msg in msgs:
                    await msg.nak(delay=2)
                await _sleep_or_stop(stop, 1.0)
                continue
            for msg in msgs:
                await msg.ack()
            metrics.EVENTS_CONSUMED.labels(self._durable).inc(len(msgs))

    async def _report_pending(self, sub: JetStreamContext.PullSubscription) -> None:
        with contextlib.suppress(Exception):
            info = await sub.consumer_info()
            metrics.CONSUMER_PENDING.labels(self._durable).set(info.num_pending or 0)


async def close_connection(nc: NatsClient | None) -> None:
    """Flush what was written (publishes, acks) and close, within a bounded time.

    nats-py's drain() can wait forever on a pull subscription's pending fetch; every
    message that mattered was already published or acked, so flush-and-close suffices.
    """
    if nc is None or nc.is_closed:
        return
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 5)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
