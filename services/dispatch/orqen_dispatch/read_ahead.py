"""A stream's chunks read ahead while the one before goes out, so those ready together go together.

Each gRPC message costs dispatch and the edge far more than the chunk in it (the edge also writes
each message to its client on its own). A provider answering at once, or any stream while the
machine is busy, has several chunks waiting by the time the last one has gone out: sending them in
one message is what keeps a loaded dispatch from falling further behind. Nothing ever waits for a
batch to fill, so a paced stream still goes out a chunk at a time, as soon as each arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """The items of `source` in order, in lists: each holds every item read since the last list was taken.

    A task of its own reads `source`, at most `most` items ahead of the caller, from the moment
    this is made. The caller gets what has been read as soon as there is anything. An error of
    `source` is raised after the items read before it. `aclose` (or `contextlib.aclosing`) stops
    the task; closing `source` is left to whoever opened it, after this is closed.
    """

    def __init__(self, source: AsyncIterator[T], most: int) -> None:
        self._read: list[T] = []
        self._ended = False
        self._error: Exception | None = None  # what ended `source`, if it failed
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._most = most
        self._task = asyncio.create_task(self._reader(source))

    @property
    def finished(self) -> bool:
        """Whether `source` has ended without an error and every item was taken: no list will follow."""
        return not self._read and self._ended and self._error is None

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def __anext__(self) -> list[T]:
        while not self._read and not self._ended:
            self._arrived.clear()
            await self._arrived.wait()
        if self._read:
            batch = self._read.copy()
            self._read.clear()
            self._room.set()
            return batch
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])  # not `await task`: that would raise its cancellation as the caller's

    async def _reader(self, source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                self._read.append(item)
                self._arrived.set()
                if len(self._read) >= self._most:
                    self._room.clear()
                    await self._room.wait()
        except Exception as err:
            self._error = err
        self._ended = True
        self._arrived.set()
