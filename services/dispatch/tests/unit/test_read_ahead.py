import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from orqen_dispatch.read_ahead import ReadAhead


class Upstream:
    """A stream whose items arrive when the test sends them; records how far it was read."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int | Exception | None] = asyncio.Queue()
        self.read = 0
        self.closed = False

    def send(self, *items: int | Exception | None) -> None:
        for item in items:
            self.queue.put_nowait(item)

    async def items(self) -> AsyncIterator[int]:
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                self.read += 1
                yield item
        finally:
            self.closed = True


async def settle() -> None:
    """Let the reader task run until it waits for the upstream again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_that_arrived_together_come_together_and_paced_ones_one_at_a_time() -> None:
    upstream = Upstream()
    batches = ReadAhead(upstream.items(), most=64)
    upstream.send(1, 2, 3)
    assert await anext(batches) == [1, 2, 3]
    upstream.send(4)
    assert await anext(batches) == [4]  # nothing waits for a batch to fill
    assert not batches.finished
    upstream.send(5, None)
    await settle()
    assert await anext(batches) == [5]
    assert batches.finished  # known with the last batch: nothing follows it
    assert [batch async for batch in batches] == []


async def test_the_reader_stays_at_most_so_many_items_ahead() -> None:
    upstream = Upstream()
    batches = ReadAhead(upstream.items(), most=2)
    upstream.send(*range(10), None)
    assert await anext(batches) == [0, 1]
    await settle()
    assert upstream.read == 4  # two more read while those two went out, then it waits
    assert [batch async for batch in batches] == [[2, 3], [4, 5], [6, 7], [8, 9]]


async def test_an_error_comes_after_the_items_read_before_it() -> None:
    upstream = Upstream()
    batches = ReadAhead(upstream.items(), most=64)
    upstream.send(1, 2, ConnectionResetError("cut"))
    assert await anext(batches) == [1, 2]
    assert not batches.finished
    with pytest.raises(ConnectionResetError, match="cut"):
        await anext(batches)


async def test_closing_early_stops_the_reader_and_the_source() -> None:
    upstream = Upstream()
    source = upstream.items()
    batches = ReadAhead(source, most=64)
    upstream.send(1)
    assert await anext(batches) == [1]
    await batches.aclose()
    await settle()
    assert upstream.closed  # the reader was cancelled while it waited for the upstream
    upstream.send(2, None)
    await settle()
    assert upstream.read == 1


async def test_a_cancelled_consumer_cancels_the_reader() -> None:
    upstream = Upstream()

    async def consume() -> list[list[int]]:
        async with aclosing(ReadAhead(upstream.items(), most=64)) as batches:
            return [batch async for batch in batches]

    task = asyncio.create_task(consume())
    upstream.send(1)
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert upstream.closed
