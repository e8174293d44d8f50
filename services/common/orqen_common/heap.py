"""The garbage collector's view of a service's heap."""

from __future__ import annotations

import gc


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
