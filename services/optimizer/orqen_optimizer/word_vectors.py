"""Texts' vectors without running the model, for the plans ranked by keywords.

A plan whose worker had no turn at the model in time (orqen_optimizer.turns), and every plan of an
account routed by keywords, is ranked by BM25, which sees only the words a tool's text shares with
the ask. The model's own input embedding table, one 384-wide row per word piece learned with the
model, gives any text a vector without the model: the mean of its word pieces' rows
(`Encoder.word_vectors`). No word sees another there, so it is no sentence embedding, but "rain"
sits nearer "weather" than "invoice" does: fused with BM25 (tool_router.WORD_WEIGHT), it ranks
first tools that say in other words what the ask asks. Training rows of the benchmark's busy plans:
docs/routing.md.

Cheap, not free: tokenising a tool text and reading its rows takes about 0.1 ms, so a new 500-tool
list (1,400 texts) would hold a keyword plan, which is meant to be the cheap one, for a tenth of a
second. A list with more than `IN_LINE_TEXTS` texts never seen is worked out on a thread of its own
instead, and its plan goes by BM25 alone: the agent's next call, with the same list, has them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from orqen_common.lru import Lru
from orqen_optimizer.embeddings import DIMENSIONS, encoder

# Tool texts whose vectors are kept (half precision: 768 bytes each), about fourteen 500-tool lists.
CACHED_TEXTS = 20_000
# Whole lists' matrices kept, so that a list seen lately costs one lookup, not one per text (about
# 1 ms of a 500-tool plan): 2.2 MB each for 500 tools.
KEPT_LISTS = 16
# At most this many texts never seen are worked out in a plan's own time.
IN_LINE_TEXTS = 16

_texts: Lru[str, np.ndarray] = Lru(CACHED_TEXTS)
_lists: Lru[int, tuple[object, np.ndarray]] = Lru(KEPT_LISTS)
_lock = threading.Lock()
_under_way: dict[int, Future[np.ndarray]] = {}
_background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="word-vectors")


def word_vector(text: str) -> np.ndarray:
    """`text`'s unit word vector (an ask's: not kept)."""
    return np.asarray(encoder().word_vectors([text])[0])


def list_word_vectors(owner: object, texts: Sequence[str]) -> np.ndarray | None:
    """One unit word vector per tool text of a list, float32 rows, kept for the latest KEPT_LISTS lists by
    their `owner` (the list's orqen_optimizer.toolset.ToolSet, held while kept, so its id is not another's).

    None while a list with more than IN_LINE_TEXTS texts never seen is worked out in the background.
    """
    with _lock:
        found = _lists.get(id(owner))
        if found is not None and found[0] is owner:
            return found[1]
        unseen = sum(_texts.get(text) is None for text in texts)
        if unseen > IN_LINE_TEXTS:
            if id(owner) not in _under_way:
                _under_way[id(owner)] = _background.submit(_work_out, owner, texts)
            return None
    return _work_out(owner, texts)


def pending(owner: object) -> Future[np.ndarray] | None:
    """The background work on `owner`'s list, while it is under way."""
    with _lock:
        return _under_way.get(id(owner))


def prepare(texts: Sequence[str]) -> None:
    """Work out and keep the vectors of `texts` now (a worker's background indexing of a new list; the
    benchmark, before it measures recall)."""
    _rows(texts)


def _work_out(owner: object, texts: Sequence[str]) -> np.ndarray:
    """The list's matrix, kept by `owner`."""
    try:
        rows = _rows(texts)
        with _lock:
            _lists.put(id(owner), (owner, rows))
        return rows
    finally:
        with _lock:
            _under_way.pop(id(owner), None)


def _rows(texts: Sequence[str]) -> np.ndarray:
    """One vector per text, float32 rows; each text's kept."""
    rows = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    with _lock:
        kept = [_texts.get(text) for text in texts]
    missing = list(dict.fromkeys(text for text, vector in zip(texts, kept, strict=True) if vector is None))
    made = dict(zip(missing, encoder().word_vectors(missing).astype(np.float16), strict=True)) if missing else {}
    with _lock:
        for text, vector in made.items():
            _texts.put(text, vector)
    for row, (text, vector) in enumerate(zip(texts, kept, strict=True)):
        rows[row] = made[text] if vector is None else vector
    return rows
