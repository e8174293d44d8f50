"""The garbage collector's view of a service's heap: the startup heap frozen, young collections
rarer, each pause measured."""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from typing import Any

from orqen_common.metrics import GC_PAUSES

# How often the pauses the collector queued are moved into the histogram.
RECORD_SECONDS = 1.0
# A young collection runs once this many more container objects were made than freed since the last
# one. At the interpreter's 700 the edge made one every 12 streamed requests at concurrency 16, each
# walking the objects of every request in flight: 14 to 39 µs of collection per request in the edge,
# 4 to 15 in dispatch (`make bench ARGS=--gc`). A request's objects are freed by reference counting
# when it ends, so at 10,000 the count seldom gets there (under 1 µs a request in the edge, 1.3 to
# 5.5 in dispatch), and what only a collection frees (reference cycles) waits for at most that many
# objects (docs/performance.md).
YOUNG_THRESHOLD = 10_000
# Pauses queued between two recordings at most (a hundred young collections a second or more under load
# at the interpreter's threshold); older ones are dropped rather than held.
QUEUED_PAUSES = 10_000


def freeze_startup_heap() -> None:
    """Take what the process made while starting up out of every later collection's walk.

    A full collection walks every container object the process holds. Most of them are made at
    startup (the functions, classes and tables of every module imported) and live as long as the
    process, yet each full collection walked them again: in an optimizer worker
    under load, about 95,000 objects, 36 to 199 ms per full collection on a loaded 2-core machine,
    while every plan in flight waited (docs/performance.md). `gc.freeze` moves them to the
    permanent generation, which no collection walks. Reference counting still frees them; only
    a cycle among them would never be collected, and they live for the process anyway.
    """
    gc.collect()
    gc.freeze()


def collect_young_less_often() -> None:
    """Run a young collection once YOUNG_THRESHOLD more container objects were made than freed, not 700."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


_pauses: deque[tuple[int, float]] = deque(maxlen=QUEUED_PAUSES)
_started = [0.0]  # when the collection in progress started (collections never overlap)
_watching = threading.Lock()


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    # Runs inside the collector, in whichever thread's allocation set it off, while every other
    # thread waits. No lock may be taken here: that thread may hold the histogram's own lock (a
    # metric being updated when its allocation set off the collection). So the pause is only queued.
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((info["generation"], time.perf_counter() - _started[0]))


def record_pauses() -> None:
    """Move the pauses queued since the last call into `orqen_gc_pause_seconds{generation}`."""
    while True:
        try:  # the recording thread and a caller may both be draining
            generation, seconds = _pauses.popleft()
        except IndexError:
            return
        GC_PAUSES.labels(str(generation)).observe(seconds)


def watch_collections() -> None:
    """Measure every garbage collection of this process from now on (once per process, however often called).

    A full collection stops every request in flight in the process (36 to 199 ms in an optimizer
    worker before the startup heap was frozen): the histogram lets an operator see such pauses
    beside the request latencies. A thread of its own records them, every RECORD_SECONDS.
    """
    with _watching:
        if _on_collection in gc.callbacks:
            return
        gc.callbacks.append(_on_collection)
    threading.Thread(target=_record_forever, name="gc-pauses", daemon=True).start()


def _record_forever() -> None:
    while True:
        time.sleep(RECORD_SECONDS)
        record_pauses()
