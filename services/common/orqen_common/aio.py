"""How every service runs its main coroutine: on uvloop's event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh uvloop event loop (asyncio.run's contract otherwise).

    uvloop does the request path's socket and timer work (HTTP, gRPC's poller, Redis, NATS)
    in C: measured in `make bench` (docs/performance.md), it is the cheapest latency cut.
    """
    return uvloop.run(main)
