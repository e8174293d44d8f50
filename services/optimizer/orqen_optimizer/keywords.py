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

# Words that say nothing about which tool is meant.
STOP_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "for",
        "to",
        "in",
        "on",
        "and",
        "or",
        "is",
        "are",
        "what",
        "how",
        "me",
        "my",
        "i",
        "with",
        "by",
        "at",
        "from",
        "be",
        "it",
        "this",
        "that",
        "can",
        "you",
        "please",
    ]
)


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


_TERM_BITS = 40  # two terms of a request share a key about once in 10^7 requests
_TERM_MASK = np.uint64((1 << _TERM_BITS) - 1)
_BUCKET_BITS = 16  # a query's 10 to 100 terms mark a few hundred of the 65,536 buckets


def _term_keys(hashes: np.ndarray) -> np.ndarray:
    """The low 40 bits of each term hash."""
    return hashes.view(np.uint64) & _TERM_MASK


@dataclass(frozen=True, slots=True, eq=False)
class Corpus:
    """A request's tool documents gathered for BM25: every (document, term) pair in flat arrays.

    Built once per distinct tool list (orqen_optimizer.toolset) and kept in document order:
    gathering is a few concatenations, where sorting the pairs by term cost a first-seen
    500-tool list about 2 ms of its plan. A plan then picks out the pairs of its queries' terms
    (`pairs_of`): one gather of each pair's bucket (the low bits of its term key) against the
    queries' buckets, then an exact comparison of the few candidates.
    """

    terms: np.ndarray  # each pair's term key (`_term_keys`)
    buckets: np.ndarray  # each pair's bucket: the low `_BUCKET_BITS` bits of its term key
    counts: np.ndarray  # how often the term is in the document
    owners: np.ndarray  # the document's index
    lengths: np.ndarray  # each document's length in words
    average: float

    @classmethod
    def of(cls, parsed: Sequence[Document]) -> Corpus:
        n = len(parsed)
        lengths = np.fromiter((length for _, _, length in parsed), dtype=np.float64, count=n)
        if not n:
            empty = np.zeros(0, dtype=np.uint64)
            return cls(empty, empty.astype(np.uint16), np.zeros(0), empty.astype(np.int64), lengths, 1.0)
        terms = _term_keys(np.concatenate([t for t, _, _ in parsed]))
        return cls(
            terms,
            terms.astype(np.uint16),  # the low 16 bits
            np.concatenate([c for _, c, _ in parsed]),
            np.repeat(np.arange(n), [len(t) for t, _, _ in parsed]),
            lengths,
            float(lengths.mean()) or 1.0,
        )

    def pairs_of(self, asked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs whose term is one of `asked` (term keys), sorted by term: their terms, counts and owners.

        Every pair of an asked term is there, so a term's run of pairs is as long as its document
        frequency (a document holds each of its terms once).
        """
        if not len(asked):
            return self.terms[:0], self.counts[:0], self.owners[:0]
        marked = np.zeros(1 << _BUCKET_BITS, dtype=bool)
        marked[asked.astype(np.uint16)] = True
        candidates = np.flatnonzero(marked[self.buckets])
        terms = self.terms[candidates]
        known = np.sort(asked)
        found = candidates[known[np.minimum(np.searchsorted(known, terms), len(known) - 1)] == terms]
        found = found[np.argsort(self.terms[found], kind="stable")]
        return self.terms[found], self.counts[found], self.owners[found]


def bm25_of_queries(queries: Sequence[list[str]], parsed: Sequence[Document] | Corpus) -> np.ndarray:
    """Okapi BM25 of each document for each query (a row per query), over these documents only.

    Vectorised over the (document, term) pairs of the queries' terms, which are picked out once
    for all the queries (an ask and its steps): a request's hundreds of tools score in a
    fraction of a millisecond.
    """
    corpus = parsed if isinstance(parsed, Corpus) else Corpus.of(parsed)
    n = len(corpus.lengths)
    if not n:
        return np.zeros((len(queries), 0))
    each = [_term_keys(np.fromiter({hash(t) for t in query}, dtype=np.int64)) for query in queries]
    terms, counts, owners = corpus.pairs_of(np.concatenate(each) if each else np.zeros(0, np.uint64))
    rows = np.zeros((len(queries), n))
    for row, asked in enumerate(each):
        first = np.searchsorted(terms, asked, side="left")
        frequency = np.searchsorted(terms, asked, side="right") - first
        # Each asked term's run of pairs, laid end to end.
        hits = np.repeat(first - np.cumsum(frequency) + frequency, frequency) + np.arange(frequency.sum())
        count, owner = counts[hits], owners[hits]
        idf = np.repeat(np.log(1 + (n - frequency + 0.5) / (frequency + 0.5)), frequency)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * corpus.lengths[owner] / corpus.average)
        rows[row] = np.bincount(owner, weights=idf * count * (BM25_K1 + 1) / (count + norm), minlength=n)
    return rows
