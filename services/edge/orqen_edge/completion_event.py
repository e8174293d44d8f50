"""A streamed answer whose request event goes out after its last byte.

Chat streams (the SDK ingress pipeline) and the proxy families (orqen_edge.proxy.routes)
end the same way: the event records how the stream ended (200, the error that cut it after
the first byte, or 499 when the client left), then the tokens the call used are charged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from orqen_common.errors import OrqenError

# Charges of streams whose client left, running on their own (a closed stream can await nothing).
_RELEASES: set[asyncio.Task[None]] = set()


class StreamedCall(Protocol):
    """The call a stream answers: it publishes its request event and spends its tokens."""

    def record(self, status: int, error: str = "") -> object:
        """Publish the request event (only the first time it is called); what it returns is not used here."""
        ...

    async def charge_tokens(self) -> None:
        """Spend the tokens the call used from its rate limits."""
        ...


async def publish_after_last_byte(
    call: StreamedCall, body: AsyncIterator[bytes], error_event: Callable[[OrqenError], bytes] | None
) -> AsyncIterator[bytes]:
    """`body` as it comes, then the request event, however the stream ends.

    The status line went out with the first byte, so an OrqenError after it can only end the
    stream: with `error_event`'s bytes when the format has an error event, else cut short.
    """
    status, error = 499, "client disconnected"
    try:
        async for data in body:
            yield data
        status, error = 200, ""
    except OrqenError as err:
        status, error = err.http_status, err.message
        if error_event is not None:
            yield error_event(err)
    finally:
        call.record(status, error)
        if status == 499:
            # The client left: dispatch never reported the usage, but what the call held of its
            # budgets is released now rather than when its reservation expires.
            task = asyncio.ensure_future(call.charge_tokens())
            _RELEASES.add(task)
            task.add_done_callback(_RELEASES.discard)
    await call.charge_tokens()
