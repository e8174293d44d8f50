"""What a service made while starting up is left out of later garbage collections (orqen_common.heap)."""

from __future__ import annotations

import subprocess
import sys

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
