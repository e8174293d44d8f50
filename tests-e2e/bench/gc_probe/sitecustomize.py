"""`make bench ARGS=--gc`: every process of the bench's stack logs how long its full garbage collections take.

Python imports `sitecustomize` at startup from the path; the bench puts this directory first on
the services' PYTHONPATH, so only the stack it starts loads this, and the services know nothing
of it. With BENCH_GC_DIR set, each full (generation 2) collection appends its wall time in
milliseconds to BENCH_GC_DIR/<pid>: a collection stops every thread of the process while it runs.
"""

import gc
import os
import time

_DIRECTORY = os.environ.get("BENCH_GC_DIR")
_started = [0.0]


def _timed(phase: str, info: dict[str, int]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    with open(os.path.join(_DIRECTORY or "", str(os.getpid())), "a") as log:
        log.write(f"{(time.perf_counter() - _started[0]) * 1000:.3f}\n")


if _DIRECTORY:
    gc.callbacks.append(_timed)
