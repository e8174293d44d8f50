"""Publisher and durable consumer against a real NATS JetStream server."""

import asyncio
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import nats
from nats.aio.msg import Msg

from orqen_common import metrics
from orqen_common.events import DurableConsumer, EventNames, EventPublisher, dead_letters, replay


class Collector:
    """A batch handler that remembers payloads, optionally failing its first batch."""

    def __init__(self, fail_first: bool = False) -> None:
        self.seen: list[bytes] = []
        self.fail_first = fail_first
        self.batches = 0
        self.sizes: list[int] = []

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        self.batches += 1
        if self.fail_first and self.batches == 1:
            raise RuntimeError("database is down")
        self.seen.extend(m.data for m in msgs)
        self.sizes.append(len(msgs))


class Store:
    """A batch handler that refuses every batch holding a refused payload, like a failing INSERT."""

    def __init__(self, refused: set[bytes]) -> None:
        self.refused = refused
        self.stored: list[bytes] = []

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        bad = [m.data for m in msgs if m.data in self.refused]
        if bad:
            raise ValueError(f"cannot store {bad[0]!r}")
        self.stored.extend(m.data for m in msgs)


class Outage:
    """A batch handler whose store is unreachable for its first `calls` calls."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.stored: list[bytes] = []

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        self.calls -= 1
        if self.calls >= 0:
            raise ConnectionRefusedError("the database is restarting")
        self.stored.extend(m.data for m in msgs)


async def _publish(url: str, names: EventNames, payloads: list[bytes]) -> None:
    publisher = EventPublisher(url, names, "test")
    publisher.start()
    for payload in payloads:
        publisher.publish("thing.happened", payload, f"req-{payload.decode()}")
    await publisher.close(grace=10)


async def _until(predicate, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _consume(url: str, names: EventNames, handler: Collector, expected: int) -> None:
    stop = asyncio.Event()
    consumer = DurableConsumer(url, names, "test", "thing.happened", handler, batch=10, max_wait=0.2)
    task = asyncio.create_task(consumer.run(stop))
    try:
        await _until(lambda: len(handler.seen) >= expected)
        await asyncio.sleep(0.3)  # nothing more should arrive
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_every_event_arrives_once_even_when_published_twice(orqen_nats_url: str, orqen_nats_prefix: str) -> None:
    names = EventNames(orqen_nats_prefix)
    publisher = EventPublisher(orqen_nats_url, names, "test")
    publisher.start()
    for i in range(25):
        publisher.publish("thing.happened", f"event-{i}".encode(), f"req-{i}")
    publisher.publish("thing.happened", b"event-3", "req-3")  # a retry of the same request id
    await publisher.close(grace=10)
    handler = Collector()
    await _consume(orqen_nats_url, names, handler, 25)
    assert sorted(handler.seen) == sorted(f"event-{i}".encode() for i in range(25))


async def test_events_that_trickle_in_after_a_short_batch_are_stored_together(
    orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    names = EventNames(orqen_nats_prefix)
    handler = Collector()
    stop = asyncio.Event()
    consumer = DurableConsumer(orqen_nats_url, names, "test", "thing.happened", handler, batch=10, linger=2.0)
    task = asyncio.create_task(consumer.run(stop))
    try:
        await _publish(orqen_nats_url, names, [b"first"])
        await _until(lambda: handler.sizes == [1])
        # The consumer now lingers: these arrive one by one, as a slow trickle of requests would.
        for i in range(4):
            await _publish(orqen_nats_url, names, [f"later-{i}".encode()])
            await asyncio.sleep(0.02)
        await _until(lambda: len(handler.seen) == 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert handler.sizes == [1, 4]
    assert handler.seen[1:] == [f"later-{i}".encode() for i in range(4)]


async def test_a_failed_batch_is_redelivered(orqen_nats_url: str, orqen_nats_prefix: str) -> None:
    names = EventNames(orqen_nats_prefix)
    publisher = EventPublisher(orqen_nats_url, names, "test")
    publisher.start()
    for i in range(5):
        publisher.publish("thing.happened", f"e{i}".encode(), f"id-{i}")
    await publisher.close(grace=10)
    handler = Collector(fail_first=True)
    await _consume(orqen_nats_url, names, handler, 5)
    assert sorted(handler.seen) == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert handler.batches >= 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_events_published_while_nats_is_down_are_delivered_later(tmp_path: Path) -> None:
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    names = EventNames("outage")
    publisher = EventPublisher(url, names, "test")
    publisher.start()
    for i in range(5):
        publisher.publish("thing.happened", f"late-{i}".encode(), f"late-{i}")
    await asyncio.sleep(0.5)
    assert not publisher.connected
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or "nats-server"
    server = subprocess.Popen(  # noqa: ASYNC220 - starting a server, not waiting on it
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await publisher.close(grace=20)
        handler = Collector()
        await _consume(url, names, handler, 5)
        assert sorted(handler.seen) == [f"late-{i}".encode() for i in range(5)]
    finally:
        server.terminate()
        server.wait(10)


async def test_a_full_buffer_drops_and_counts_instead_of_blocking() -> None:
    names = EventNames("full")
    publisher = EventPublisher(f"nats://127.0.0.1:{_free_port()}", names, "test", max_buffer=2)
    dropped = metrics.EVENTS_DROPPED.labels("full.thing.happened")
    before = dropped._value.get()
    for i in range(5):
        publisher.publish("thing.happened", b"x", f"id-{i}")  # no task started: nothing drains
    assert dropped._value.get() - before == 3


async def test_an_event_that_cannot_be_stored_is_parked_and_the_rest_of_its_batch_is_stored(
    orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    names = EventNames(orqen_nats_prefix)
    payloads = [f"e{i}".encode() for i in range(30)]
    await _publish(orqen_nats_url, names, payloads)
    store = Store(refused={b"e7", b"e21"})
    parked = metrics.EVENTS_DEAD_LETTERED.labels(names.durable("test"))
    before = parked._value.get()
    stop = asyncio.Event()
    consumer = DurableConsumer(
        orqen_nats_url, names, "test", "thing.happened", store, batch=30, max_wait=0.2, redelivery_delay=0.1
    )
    task = asyncio.create_task(consumer.run(stop))
    nc = await nats.connect(orqen_nats_url)
    try:
        js = nc.jetstream()
        # The healthy events of the failing batch are stored without waiting for the bad ones.
        await _until(lambda: len(store.stored) == 28)
        await _until(lambda: parked._value.get() - before == 2)
        letters = await dead_letters(js, names)
        await asyncio.sleep(0.5)  # a parked event is never delivered again
        assert parked._value.get() - before == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await nc.close()
    assert sorted(store.stored) == sorted(set(payloads) - {b"e7", b"e21"})
    assert sorted((d.data, d.request_id, d.consumer, d.deliveries) for d in letters) == [
        (b"e21", "req-e21", "test", 5),
        (b"e7", "req-e7", "test", 5),
    ]
    assert {d.subject for d in letters} == {names.subject("thing.happened")}
    assert {d.error for d in letters} == {"ValueError(\"cannot store b'e7'\")", "ValueError(\"cannot store b'e21'\")"}


async def test_replay_puts_dead_letters_back_once(orqen_nats_url: str, orqen_nats_prefix: str) -> None:
    names = EventNames(orqen_nats_prefix)
    await _publish(orqen_nats_url, names, [b"ok", b"bad"])
    store = Store(refused={b"bad"})
    nc = await nats.connect(orqen_nats_url)
    js = nc.jetstream()
    try:
        stop = asyncio.Event()
        consumer = DurableConsumer(
            orqen_nats_url, names, "test", "thing.happened", store, max_wait=0.2, max_deliveries=2, redelivery_delay=0.1
        )
        task = asyncio.create_task(consumer.run(stop))
        try:
            await _until(lambda: store.stored == [b"ok"])
            letters: list = []

            async def parked() -> None:
                letters[:] = await dead_letters(js, names, "test")

            for _ in range(300):
                await parked()
                if letters:
                    break
                await asyncio.sleep(0.05)
            assert [letter.data for letter in letters] == [b"bad"]
            store.refused.clear()  # the fix
            await replay(js, names, letters[0])
            await _until(lambda: store.stored == [b"ok", b"bad"])
            await asyncio.sleep(0.3)  # nothing more should arrive
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert store.stored == [b"ok", b"bad"]
        assert await dead_letters(js, names) == []
    finally:
        await nc.close()


async def test_a_batch_is_held_while_its_store_is_unavailable_and_never_parked(
    orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    names = EventNames(orqen_nats_prefix)
    payloads = [f"o{i}".encode() for i in range(5)]
    await _publish(orqen_nats_url, names, payloads)
    store = Outage(calls=4)
    stop = asyncio.Event()
    # One delivery allowed: a batch redelivered because of the outage would be parked at once.
    consumer = DurableConsumer(
        orqen_nats_url, names, "test", "thing.happened", store, max_wait=0.2, ack_wait=1.0, max_deliveries=1
    )
    task = asyncio.create_task(consumer.run(stop))
    nc = await nats.connect(orqen_nats_url)
    try:
        await _until(lambda: len(store.stored) == 5)
        await asyncio.sleep(0.3)
        assert await dead_letters(nc.jetstream(), names) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await nc.close()
    assert sorted(store.stored) == payloads


async def test_a_caller_can_wait_until_jetstream_has_stored_its_event(
    orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    """What the edge does before an answer's last byte: once `stored` is true the event survives the edge."""
    names = EventNames(orqen_nats_prefix)
    publisher = EventPublisher(orqen_nats_url, names, "test")
    publisher.start()
    nc = await nats.connect(orqen_nats_url)
    try:
        first = publisher.publish("thing.happened", b"first", "req-first")
        await _until(first.done)
        event = publisher.publish("thing.happened", b"kept", "req-kept")
        assert await publisher.stored(event, within=30)
        info = await nc.jetstream().stream_info(names.stream)
        assert info.state.messages == 2  # in JetStream, not only in the publisher's buffer
    finally:
        await nc.close()
        await publisher.close(grace=5)


async def test_nobody_waits_for_a_store_while_nats_is_away() -> None:
    """With NATS unreachable the event stays buffered and the caller goes on (answers are not held up)."""
    publisher = EventPublisher(f"nats://127.0.0.1:{_free_port()}", EventNames("away"), "test")
    publisher.start()
    try:
        event = publisher.publish("thing.happened", b"later", "req-later")
        # A publisher that waited here would wait for the whole hour.
        assert not await asyncio.wait_for(publisher.stored(event, within=3600), timeout=60)
    finally:
        await publisher.close(grace=0.1)


async def test_an_event_whose_publish_keeps_failing_does_not_hold_up_the_events_behind_it(
    orqen_nats_url: str, orqen_nats_prefix: str
) -> None:
    """Publishes are in flight side by side: each answer waits for its own ack, not for those queued before it."""
    names = EventNames(orqen_nats_prefix)
    publisher = EventPublisher(orqen_nats_url, names, "test")
    publisher.start()
    nc = await nats.connect(orqen_nats_url)
    try:
        # Larger than the server's max_payload: refused before it leaves, so retried for as long as it runs.
        stuck = publisher.publish("thing.happened", b"x" * (nc.max_payload + 1), "req-stuck")
        behind = publisher.publish("thing.happened", b"behind", "req-behind")
        await _until(behind.done)
        assert not stuck.done()
        info = await nc.jetstream().stream_info(names.stream)
        assert info.state.messages == 1
    finally:
        await nc.close()
        await publisher.close(grace=0.1)
