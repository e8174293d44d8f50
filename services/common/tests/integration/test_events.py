"""Publisher and durable consumer against a real NATS JetStream server."""

import asyncio
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nats.aio.msg import Msg

from orqen_common import metrics
from orqen_common.events import DurableConsumer, EventNames, EventPublisher


class Collector:
    """A batch handler that remembers payloads, optionally failing its first batch."""

    def __init__(self, fail_first: bool = False) -> None:
        self.seen: list[bytes] = []
        self.fail_first = fail_first
        self.batches = 0

    async def __call__(self, msgs: Sequence[Msg]) -> None:
        self.batches += 1
        if self.fail_first and self.batches == 1:
            raise RuntimeError("database is down")
        self.seen.extend(m.data for m in msgs)


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
