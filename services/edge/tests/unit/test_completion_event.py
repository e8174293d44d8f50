"""The request event of a streamed answer goes out once, after the last byte, however the stream ends.

The last tests send the answer as the edge does (Litestar's Stream of publish_after_last_byte, on a
real uvicorn listener): a client that leaves mid-stream stops the body where it waits (the gRPC call
under it, and so the provider's) and is recorded as 499.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import uvicorn
from litestar import Litestar, Response, post
from litestar.response import Stream

from fakes.serve import free_port
from orqen_common.errors import OrqenError
from orqen_edge.completion_event import publish_after_last_byte

CUT = OrqenError.of(grpc.StatusCode.UNAVAILABLE, "the provider went away")


@dataclass
class Call:
    recorded: list[tuple[int, str]] = field(default_factory=list)
    charged: int = 0

    def record(self, status: int, error: str = "") -> None:
        self.recorded.append((status, error))

    async def charge_tokens(self) -> None:
        self.charged += 1


async def body(*parts: bytes, then: Exception | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then is not None:
        raise then


def error_event(err: OrqenError) -> bytes:
    return b"error: " + err.message.encode()


async def test_a_finished_stream_is_recorded_as_200_and_charged() -> None:
    call = Call()
    sent = [part async for part in publish_after_last_byte(call, body(b"a", b"b"), error_event)]
    assert sent == [b"a", b"b"]
    assert call.recorded == [(200, "")] and call.charged == 1


async def test_an_error_after_the_first_byte_ends_the_stream_with_the_formats_error_event() -> None:
    call = Call()
    sent = [part async for part in publish_after_last_byte(call, body(b"a", then=CUT), error_event)]
    assert sent == [b"a", b"error: the provider went away"]
    assert call.recorded == [(503, "the provider went away")] and call.charged == 1


async def test_without_an_error_event_the_stream_is_cut_short() -> None:
    call = Call()
    sent = [part async for part in publish_after_last_byte(call, body(b"a", then=CUT), None)]
    assert sent == [b"a"]
    assert call.recorded == [(503, "the provider went away")]


async def test_a_client_that_leaves_is_recorded_as_499_and_releases_its_budgets_on_its_own() -> None:
    call = Call()
    stream = publish_after_last_byte(call, body(b"a", b"b"), error_event)
    assert await anext(stream) == b"a"
    await stream.aclose()
    assert call.recorded == [(499, "client disconnected")]
    # The closed stream awaits nothing more; the charge (what the call held, released) runs as its own task.
    await asyncio.sleep(0)
    assert call.charged == 1


POLLS = 500  # of 0.01 s: a bound on waiting for the server to notice, not a timing assertion


class Body:
    """A body of two chunks, then, unless `ends`, a wait for a third that never comes."""

    def __init__(self, ends: bool) -> None:
        self.ends = ends
        self.outcome = ""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"
            if not self.ends:
                await asyncio.Event().wait()
            self.outcome = "ended"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise


@contextlib.asynccontextmanager
async def serving(body: Body, call: Call) -> AsyncIterator[str]:
    @post("/stream", status_code=200)
    async def stream() -> Response[Any]:
        answer = publish_after_last_byte(call, aiter(body), None)
        return Stream(answer, media_type="text/event-stream", headers={"x-orqen-model": "m"})

    port = free_port()
    config = uvicorn.Config(
        Litestar([stream]), host="127.0.0.1", port=port, log_config=None, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(POLLS):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/stream"
    finally:
        server.should_exit = True
        await task


async def test_every_chunk_reaches_the_client_with_the_answers_headers() -> None:
    body, call = Body(ends=True), Call()
    async with serving(body, call) as url, httpx.AsyncClient() as client:
        response = await client.post(url)
    assert response.status_code == 200 and response.headers["x-orqen-model"] == "m"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b"data: 1\n\ndata: 2\n\n"
    assert body.outcome == "ended" and call.recorded == [(200, "")]


async def test_a_client_that_leaves_mid_stream_cancels_the_body_where_it_waits() -> None:
    body, call = Body(ends=False), Call()
    async with serving(body, call) as url:
        async with httpx.AsyncClient() as client, client.stream("POST", url) as response:
            first = await anext(response.aiter_raw())
            assert first.startswith(b"data: 1")
        # The client's connection is closed: the server notices and cancels the body's wait.
        for _ in range(POLLS):
            if body.outcome:
                break
            await asyncio.sleep(0.01)
        assert body.outcome == "cancelled" and call.recorded == [(499, "client disconnected")]
        # The listener goes on serving.
        body.ends, body.outcome = True, ""
        async with httpx.AsyncClient() as client:
            assert (await client.post(url)).content == b"data: 1\n\ndata: 2\n\n"
        assert body.outcome == "ended" and call.recorded[1:] == [(200, "")]
