"""Events over NATS JetStream: one stream per stack, a buffered publisher, durable consumers.

Subjects are `<prefix>.<name>` (e.g. `orqen.request.completed`); the stream is
`<PREFIX>_EVENTS` and durable consumers `<prefix>_<name>`, so several stacks can share
one NATS server. Every message carries `Nats-Msg-Id` (the request id): JetStream drops
duplicates inside its window and consumers key on the id, so nothing is counted twice.

An event a consumer cannot store is delivered a bounded number of times, then parked on
its dead-letter subject `<prefix>.dlq.<consumer>` (in the same stream: JetStream refuses a
second stream whose subjects overlap `<prefix>.>`), from where `replay` puts it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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
MSG_ID_HEADER = "Nats-Msg-Id"
# Headers of a dead letter: the request it records, where it came from, how often and why it failed.
REQUEST_ID_HEADER = "Orqen-Request-Id"
SUBJECT_HEADER = "Orqen-Subject"
CONSUMER_HEADER = "Orqen-Consumer"
DELIVERIES_HEADER = "Orqen-Deliveries"
ERROR_HEADER = "Orqen-Error"
_ERROR_HEADER_CHARS = 500

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

    def dead_letters(self, consumer: str = "*") -> str:
        """The subject `consumer` parks the events it cannot store on (`*`: every consumer's)."""
        return f"{self.prefix}.dlq.{consumer}"


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
    # Done once JetStream has stored the event; cancelled when the event was dropped.
    stored: asyncio.Future[None]


class EventPublisher:
    """Publishes events without ever blocking the request path.

    Events go into a bounded buffer. While NATS is reachable each one leaves it at once and
    its publish is in flight beside the others' (up to `max_in_flight`), so concurrent
    answers wait for their own JetStream ack only, never for the acks of the events queued
    before theirs; an event whose publish fails is retried on its own while the others go
    on. When the buffer is full the event is dropped, counted in `orqen_events_dropped_total`
    and logged, never silently.

    A caller that must not answer before its event is safe (the edge, before the last byte
    of an answer) waits with `stored`: while NATS is healthy that is one JetStream ack, so a
    process killed right after answering loses no record; while it is not, nobody waits and
    the buffer carries the events until NATS is back.
    """

    def __init__(
        self, url: str, names: EventNames, client_name: str, max_buffer: int = 10_000, max_in_flight: int = 256
    ) -> None:
        self._url = url
        self._names = names
        self._client_name = client_name
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_buffer)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._nc: NatsClient | None = None
        self._task: asyncio.Task[None] | None = None
        # Whether the last publish (or connect) succeeded: only then is waiting for a store worth it.
        self._healthy = False

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

    def publish(self, name: str, payload: bytes, msg_id: str) -> asyncio.Future[None]:
        """Buffer an event; the future is done once JetStream has stored it (see `stored`)."""
        subject = self._names.subject(name)
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(subject, payload, msg_id, stored))
        except asyncio.QueueFull:
            stored.cancel()
            metrics.EVENTS_DROPPED.labels(subject).inc()
            log.error("event buffer full, event dropped", subject=subject, msg_id=msg_id)
        metrics.EVENT_BUFFER_DEPTH.set(self._queue.qsize())
        return stored

    async def stored(self, event: asyncio.Future[None], within: float) -> bool:
        """Wait up to `within` seconds until JetStream has stored `event` (what `publish` returned).

        Returns at once while NATS is failing: the event stays buffered and is published once
        NATS is back, and waiting would only slow every answer by `within`. True when stored.
        """
        if self._healthy and not event.done():
            await asyncio.wait({event}, timeout=within)
        return event.done() and not event.cancelled()

    async def _run(self) -> None:
        """Connect (retrying until NATS answers), then start a delivery for each buffered event."""
        backoff = 0.2
        while True:
            try:
                if self._nc is None:
                    self._nc = await connect(self._url, self._client_name)
                    await ensure_stream(self._nc.jetstream(), self._names)
                    self._healthy = True
                js = self._nc.jetstream()
                await self._in_flight.acquire()  # taken before the event, so a full pipeline leaves it buffered
                item = await self._queue.get()
                delivery = asyncio.create_task(self._deliver(js, item))
                self._deliveries.add(delivery)  # a reference, so the task is not collected before it ends
                delivery.add_done_callback(self._deliveries.discard)
                metrics.EVENT_BUFFER_DEPTH.set(self._queue.qsize())
            except asyncio.CancelledError:
                raise
            except Exception as err:  # connection failures before the first success
                self._healthy = False
                log.warning("NATS unavailable, events are buffered", error=repr(err), buffered=self._queue.qsize())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _deliver(self, js: JetStreamContext, item: _Pending) -> None:
        """Publish one event until JetStream has stored it, retrying it alone while the others go on."""
        backoff = 0.2
        try:
            while True:
                try:
                    await js.publish(item.subject, item.payload, timeout=5, headers={MSG_ID_HEADER: item.msg_id})
                    break
                except (TimeoutError, nats.errors.Error) as err:
                    self._healthy = False
                    log.warning("event publish failed, retrying", subject=item.subject, error=repr(err))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            self._healthy = True
            if not item.stored.done():
                item.stored.set_result(None)
            metrics.EVENTS_PUBLISHED.labels(item.subject).inc()
            self._queue.task_done()
        finally:
            self._in_flight.release()

    async def close(self, grace: float) -> None:
        """Publish what is buffered or in flight (for up to `grace` seconds), then drain the connection."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace)
        unsent = self._queue.qsize() + len(self._deliveries)
        if unsent:
            log.error("events still buffered at shutdown were dropped", count=unsent)
        tasks = [task for task in (self._task, *self._deliveries) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_connection(self._nc)


BatchHandler = Callable[[Sequence[Msg]], Awaitable[None]]


def connection_lost(err: Exception) -> bool:
    """The default test of a handler failure that is the store's, not the events': the network failed."""
    return isinstance(err, (OSError, TimeoutError))


class DurableConsumer:
    """Feeds batches of one subject to `handler`; acks only after the handler returns.

    After a batch shorter than `batch` the next fetch waits until `linger` seconds have passed
    since this one, so a trickle of events is stored a few at a time instead of one transaction
    and one round of acks per event (at concurrency 1 that was most of accounting's and billing's
    CPU, taken from the two cores the request path runs on).

    A crash between the handler's commit and the ack means redelivery, which the handler
    absorbs by keying on the request id. When the handler fails:
    - because its store is unavailable (`unavailable(err)`: Postgres down or restarting), the
      batch is held and retried in place until it is stored, its ack deadline extended
      meanwhile, so an outage never counts against the events;
    - otherwise the batch is split in halves and each half retried, down to the events that
      fail alone: every other event of the batch is stored at once. A failing event is
      redelivered after `redelivery_delay` seconds, and after `max_deliveries` deliveries
      parked on the dead-letter subject, counted and logged with its request id.
    The delivery count is JetStream's own (so it survives restarts), but the limit is applied
    here rather than with the consumer's `max_deliver`: at that limit the server stops
    delivering and keeps nothing but an advisory, while here the event is parked before it is
    let go.
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
        linger: float = 0.05,
        ack_wait: float = 30.0,
        max_deliveries: int = 5,
        redelivery_delay: float = 2.0,
        unavailable: Callable[[Exception], bool] = connection_lost,
    ) -> None:
        self._url = url
        self._names = names
        self._consumer = consumer
        self._durable = names.durable(consumer)
        self._subject = names.subject(event)
        self._handler = handler
        self._batch = batch
        self._max_wait = max_wait
        self._linger = linger
        self._ack_wait = ack_wait
        self._max_deliveries = max_deliveries
        self._redelivery_delay = redelivery_delay
        self._unavailable = unavailable
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
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                msgs = await sub.fetch(self._batch, timeout=self._max_wait)
            except (TimeoutError, nats.errors.TimeoutError):
                await self._report_pending(sub)
                continue
            await self._store(js, msgs, stop)
            remaining = self._linger - (loop.time() - started)
            if len(msgs) < self._batch and remaining > 0:
                # A short batch drained the stream: the next fetch waits out the rest of `linger`, so
                # what arrives meanwhile is stored in one transaction rather than one per event
                # (Kafka's linger.ms, on the consuming side). Records land at most `linger` later.
                await _sleep_or_stop(stop, remaining)

    async def _store(self, js: JetStreamContext, msgs: Sequence[Msg], stop: asyncio.Event) -> None:
        """Store `msgs` and ack them; failing that, isolate the events that fail and reject only those."""
        pause = 0.2
        while True:
            try:
                await self._handler(msgs)
                break
            except Exception as err:
                if stop.is_set():
                    return  # the failure may be the shutdown's: unacked, the batch comes back
                if not self._unavailable(err):
                    await self._isolate(js, msgs, err, stop)
                    return
                log.warning("event store unavailable; holding the batch", consumer=self._durable, error=repr(err))
            await _sleep_or_stop(stop, pause)
            # Sleeps stay well inside ack_wait, and each retry restarts it: held events are not redelivered.
            pause = min(pause * 2, self._ack_wait / 3)
            for msg in msgs:
                await msg.in_progress()
        for msg in msgs:
            await msg.ack()
        metrics.EVENTS_CONSUMED.labels(self._durable).inc(len(msgs))

    async def _isolate(self, js: JetStreamContext, msgs: Sequence[Msg], err: Exception, stop: asyncio.Event) -> None:
        if len(msgs) > 1:
            half = len(msgs) // 2
            await self._store(js, msgs[:half], stop)
            await self._store(js, msgs[half:], stop)
            return
        msg = msgs[0]
        deliveries = msg.metadata.num_delivered
        request_id = _request_id(msg)
        if deliveries < self._max_deliveries:
            log.warning(
                "event not stored; it will be redelivered",
                consumer=self._durable,
                request_id=request_id,
                deliveries=deliveries,
                error=repr(err),
            )
            await msg.nak(delay=self._redelivery_delay)
            return
        await self._park(js, msg, request_id, deliveries, err)
        await msg.term()
        metrics.EVENTS_DEAD_LETTERED.labels(self._durable).inc()
        log.error(
            "event not stored; parked on the dead-letter subject",
            consumer=self._durable,
            request_id=request_id,
            deliveries=deliveries,
            dead_letters=self._names.dead_letters(self._consumer),
            error=repr(err),
        )

    async def _park(self, js: JetStreamContext, msg: Msg, request_id: str, deliveries: int, err: Exception) -> None:
        headers = {
            # Parking again after a lost term (the event comes back once more) keeps one dead letter.
            MSG_ID_HEADER: f"{self._durable}.{msg.metadata.sequence.stream}",
            REQUEST_ID_HEADER: request_id,
            SUBJECT_HEADER: msg.subject,
            CONSUMER_HEADER: self._consumer,
            DELIVERIES_HEADER: str(deliveries),
            # ascii(): a header is one line of ASCII, whatever the error says.
            ERROR_HEADER: ascii(err)[:_ERROR_HEADER_CHARS],
        }
        await js.publish(self._names.dead_letters(self._consumer), msg.data, timeout=5, headers=headers)

    async def _report_pending(self, sub: JetStreamContext.PullSubscription) -> None:
        with contextlib.suppress(Exception):
            info = await sub.consumer_info()
            metrics.CONSUMER_PENDING.labels(self._durable).set(info.num_pending or 0)


def _request_id(msg: Msg) -> str:
    """The request an event records: named by a replay's header, else by the publisher's message id."""
    headers = msg.headers or {}
    return headers.get(REQUEST_ID_HEADER) or headers.get(MSG_ID_HEADER, "")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer parked: its stream sequence, what it records and why it was parked."""

    seq: int
    consumer: str
    subject: str
    request_id: str
    deliveries: int
    error: str
    parked_at: dt.datetime | None
    data: bytes


async def dead_letters(js: JetStreamContext, names: EventNames, consumer: str = "*") -> list[DeadLetter]:
    """The events parked by `consumer` (`*`: by every consumer), oldest first."""
    letters: list[DeadLetter] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(names.stream, seq=seq, subject=names.dead_letters(consumer), next=True)
        except NotFoundError:
            return letters
        headers = raw.headers or {}
        letters.append(
            DeadLetter(
                seq=raw.seq or 0,
                consumer=headers.get(CONSUMER_HEADER, ""),
                subject=headers.get(SUBJECT_HEADER, ""),
                request_id=headers.get(REQUEST_ID_HEADER, ""),
                deliveries=int(headers.get(DELIVERIES_HEADER, "0")),
                error=headers.get(ERROR_HEADER, ""),
                parked_at=raw.time,
                data=raw.data or b"",
            )
        )
        seq = (raw.seq or seq) + 1


async def replay(js: JetStreamContext, names: EventNames, letter: DeadLetter) -> None:
    """Publish a dead letter on its subject again, then remove it from the dead letters.

    Every consumer of the subject receives it; those that stored it already change nothing, as
    for any redelivery. Its message id is new (the request id alone would fall inside the
    duplicate window of a recent event), and the same on a second replay of the same letter.
    """
    headers = {MSG_ID_HEADER: f"{letter.request_id}.replay.{letter.seq}", REQUEST_ID_HEADER: letter.request_id}
    await js.publish(letter.subject, letter.data, timeout=5, headers=headers)
    await js.delete_msg(names.stream, letter.seq)


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
