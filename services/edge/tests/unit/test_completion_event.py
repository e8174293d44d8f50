"""The request event of a streamed answer goes out once, after the last byte, however the stream ends."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

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
