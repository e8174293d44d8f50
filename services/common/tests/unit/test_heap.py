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


YOUNG = """
import gc
from orqen_common.heap import YOUNG_THRESHOLD, collect_young_less_often

middle, old = gc.get_threshold()[1:]
collect_young_less_often()
assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old), gc.get_threshold()
collections = []
gc.callbacks.append(lambda phase, info: collections.append(info["generation"]) if phase == "start" else None)
gc.collect()
collections.clear()
held = [{"request": i} for i in range(YOUNG_THRESHOLD // 2)]  # the objects of requests in flight
assert collections == [], collections  # at the interpreter's 700 there would have been several
freed = 0
for i in range(5 * YOUNG_THRESHOLD):  # made and freed: reference counting frees them, no collection runs
    freed += len({"request": i})
assert collections == [], collections
for _ in range(YOUNG_THRESHOLD):  # garbage only a collection frees: one comes once there are enough
    cycle = {}
    cycle["self"] = cycle
assert collections and collections[0] == 0, collections
print("ok")
"""


def test_young_collections_wait_for_many_more_objects_than_the_interpreters_700() -> None:
    done = subprocess.run([sys.executable, "-c", YOUNG], capture_output=True, text=True, timeout=60)
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
