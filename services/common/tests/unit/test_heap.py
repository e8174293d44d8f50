"""What a service made while starting up is left out of later garbage collections, and each pause is measured
(orqen_common.heap)."""

from __future__ import annotations

import gc
import subprocess
import sys

from prometheus_client import REGISTRY

from orqen_common import heap
from orqen_common.heap import watch_collections

# In a process of its own: freezing is for the whole process, and the test runner's heap is not a service's.
SCRIPT = """
import gc
from orqen_common.heap import freeze_startup_heap

class Startup:
    pass

tables = [{"made": "at startup", "index": i} for i in range(1000)]
marker = Startup()
walked = len(gc.get_objects())
freeze_startup_heap()
assert gc.get_freeze_count() >= len(tables), gc.get_freeze_count()
assert all(o is not marker for o in gc.get_objects())  # no collection walks it any more
assert len(gc.get_objects()) < walked - len(tables)
later = [{"made": "after"} for _ in range(10)]
assert any(o is later for o in gc.get_objects())  # what comes after is collected as before
print("ok")
"""


def test_the_startup_heap_is_frozen_out_of_later_collections() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_each_collection_pause_is_recorded_by_generation() -> None:
    watch_collections()
    watch_collections()  # once per process, however often called
    assert gc.callbacks.count(heap._on_collection) == 1

    def recorded(generation: str) -> tuple[float, float]:
        labels = {"generation": generation}
        count = REGISTRY.get_sample_value("orqen_gc_pause_seconds_count", labels) or 0.0
        return count, REGISTRY.get_sample_value("orqen_gc_pause_seconds_sum", labels) or 0.0

    count, total = recorded("2")
    gc.collect()  # a full collection, queued by the collector's callback
    heap.record_pauses()  # as the recording thread does every second
    after, after_total = recorded("2")
    assert after >= count + 1 and after_total > total
    gc.collect(0)
    heap.record_pauses()
    assert recorded("0")[0] >= 1
