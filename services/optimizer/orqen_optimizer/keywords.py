"""Keyword scores: words of a text, and Okapi BM25 over a request's tools (the keyword fast path)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BM25_K1, BM25_B = 1.2, 0.75
_WORDS = re.compile(r"[A-Za-z]+|\d+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(_CAMEL.sub(" ", text))]


# A document's distinct terms (as in-process hashes), their counts, and its length in words.
Document = tuple[np.ndarray, np.ndarray, int]


@functools.lru_cache(maxsize=200_000)
def _document(text: str) -> Document:
    return document(text)


def document(text: str) -> Document:
    """`text` as BM25 reads it."""
    counts = Counter(words(text))
    terms = np.fromiter((hash(t) for t in counts), dtype=np.int64, count=len(counts))
    return terms, np.fromiter(counts.values(), dtype=np.float64, count=len(counts)), counts.total()


def bm25(query: list[str], texts: Sequence[str]) -> np.ndarray:
    """Okapi BM25 of each text for the query, over these texts only."""
    return bm25_of_documents(query, [_document(t) for t in texts])


def bm25_of_documents(query: list[str], parsed: Sequence[Document]) -> np.ndarray:
    """Okapi BM25 of each document for the query, over these documents only."""
    return np.asarray(bm25_of_queries([query], parsed)[0])


# A corpus's pairs are sorted as one 64-bit word each: the term's key above, the pair's index below.
_PAIR_BITS = 24  # 16.7 million pairs: far past any request (500 tools make about 20,000)
_PAIR_MASK = np.uint64((1 << _PAIR_BITS) - 1)


def _term_keys(hashes: np.ndarray) -> np.ndarray:
    """The low 40 bits of each term hash: two terms of a request share one about once in 10^7 requests."""
    return (hashes.view(np.uint64) << np.uint64(_PAIR_BITS)) >> np.uint64(_PAIR_BITS)


@dataclass(frozen=True, slots=True, eq=False)
class Corpus:
    """A request's tool documents gathered for BM25: every (document, term) pair in flat arrays.

    Built once per distinct tool list (orqen_optimizer.toolset): agents send the same tools with
    every call, so a request pays only for its queries. The pairs are sorted by term, so a query
    term finds its documents by binary search, and how many there are is its document frequency
    (a document holds each of its terms once).
    """

    terms: np.ndarray  # each pair's term key (`_term_keys`), ascending
    counts: np.ndarray  # how often the term is in the document
    owners: np.ndarray  # the document's index
    lengths: np.ndarray  # each document's length in words
    average: float

    @classmethod
    def of(cls, parsed: Sequence[Document]) -> Corpus:
        n = len(parsed)
        lengths = np.fromiter((length for _, _, length in parsed), dtype=np.float64, count=n)
        if not n:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, np.zeros(0), empty, lengths, 1.0)
        # One sort of (term key, pair) packed in 64 bits: several times cheaper than an argsort.
        # Shifting the hash up keeps its low bits, its `_term_keys`, above the pair's index.
        pairs = np.concatenate([t for t, _, _ in parsed]).view(np.uint64)
        packed = np.sort((pairs << np.uint64(_PAIR_BITS)) | np.arange(len(pairs), dtype=np.uint64))
        order = (packed & _PAIR_MASK).astype(np.int64)
        return cls(
            packed >> np.uint64(_PAIR_BITS),
            np.concatenate([c for _, c, _ in parsed])[order],
            np.repeat(np.arange(n), [len(t) for t, _, _ in parsed])[order],
            lengths,
            float(lengths.mean()) or 1.0,
        )


def bm25_of_queries(queries: Sequence[list[str]], parsed: Sequence[Document] | Corpus) -> np.ndarray:
    """Okapi BM25 of each document for each query (a row per query), over these documents only.

    Vectorised over the (document, term) pairs, which are gathered once for all the queries (an
    ask and its steps): a request's hundreds of tools score in a fraction of a millisecond.
    """
    corpus = parsed if isinstance(parsed, Corpus) else Corpus.of(parsed)
    n = len(corpus.lengths)
    if not n:
        return np.zeros((len(queries), 0))
    rows = np.zeros((len(queries), n))
    for row, query in enumerate(queries):
        asked = _term_keys(np.fromiter({hash(t) for t in query}, dtype=np.int64))
        first = np.searchsorted(corpus.terms, asked, side="left")
        frequency = np.searchsorted(corpus.terms, asked, side="right") - first
        # Each asked term's run of pairs, laid end to end.
        hits = np.repeat(first - np.cumsum(frequency) + frequency, frequency) + np.arange(frequency.sum())
        counts, owner = corpus.counts[hits], corpus.owners[hits]
        idf = np.repeat(np.log(1 + (n - frequency + 0.5) / (frequency + 0.5)), frequency)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * corpus.lengths[owner] / corpus.average)
        rows[row] = np.bincount(owner, weights=idf * counts * (BM25_K1 + 1) / (counts + norm), minlength=n)
    return rows
