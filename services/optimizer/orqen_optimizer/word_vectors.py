"""Texts' vectors without running the model, for the plans ranked by keywords.

A plan whose worker had no turn at the model in time (orqen_optimizer.turns), and every plan of an
account routed by keywords, is ranked by BM25, which sees only the words a tool's text shares with
the ask. The model's own input embedding table, one 384-wide row per word piece learned with the
model, gives any text a vector in microseconds: the mean of its word pieces' rows
(`Encoder.word_vector`). No word sees another there, so it is no sentence embedding, but "rain"
sits nearer "weather" than "invoice" does: fused with BM25 (tool_router.WORD_WEIGHT), it ranks
first tools that say in other words what the ask asks. Training rows of the benchmark's busy plans:
docs/routing.md.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np

from orqen_common.lru import Lru
from orqen_optimizer.embeddings import DIMENSIONS, encoder

# Tool texts whose vectors are kept (half precision: 768 bytes each), about fourteen 500-tool lists.
CACHED_TEXTS = 20_000
# Whole lists' matrices kept, so that a list seen lately costs one lookup, not one per text (about
# 1 ms of a 500-tool plan): 2.2 MB each for 500 tools.
KEPT_LISTS = 16
_lists: Lru[int, tuple[object, np.ndarray]] = Lru(KEPT_LISTS)
_lock = threading.Lock()


def word_vector(text: str) -> np.ndarray:
    """`text`'s unit word vector (an ask's: not kept)."""
    return encoder().word_vector(text)


def tool_word_vectors(texts: Sequence[str]) -> np.ndarray:
    """One unit word vector per tool text, float32 rows; each text's kept for the next list that has it."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.stack([_kept(text) for text in texts]).astype(np.float32)


def list_word_vectors(owner: object, texts: Sequence[str]) -> np.ndarray:
    """`tool_word_vectors(texts)` of a tool list, kept for the latest KEPT_LISTS lists by their `owner`
    (the list's orqen_optimizer.toolset.ToolSet, held while kept, so its id is not another's)."""
    with _lock:
        found = _lists.get(id(owner))
    if found is not None and found[0] is owner:
        return found[1]
    vectors = tool_word_vectors(texts)
    with _lock:
        _lists.put(id(owner), (owner, vectors))
    return vectors


@functools.lru_cache(maxsize=CACHED_TEXTS)
def _kept(text: str) -> np.ndarray:
    return encoder().word_vector(text).astype(np.float16)
