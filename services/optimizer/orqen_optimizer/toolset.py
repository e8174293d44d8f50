"""What the router needs of a request's whole tool list, worked out once per distinct list.

An agent sends the same tools with every call, so the per-tool Python work of a plan (gathering
the BM25 corpus, the tools' view texts and their ids, the union of their name words, their
families and utility tools, and once the tools' vectors are all indexed, where they are in the index) is kept for
the latest `KEPT` tool lists: a request then pays one hash of its tools' identities. The list is
known by the identities of its `ToolFacts` (kept per distinct definition, orqen_optimizer.tools);
the cached entry holds those objects, so an identity cannot be reused by another definition while
its entry lives.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from orqen_common.lru import Lru
from orqen_optimizer.embeddings import ToolIndex, text_id
from orqen_optimizer.families import Family, families
from orqen_optimizer.keywords import Corpus
from orqen_optimizer.tools import ToolFacts
from orqen_optimizer.utilities import Utilities, utilities

KEPT = 256


@dataclass(frozen=True, slots=True, eq=False)
class ToolSet:
    facts: tuple[ToolFacts, ...]
    names: list[str]
    views: list[tuple[str, ...]]  # per tool, the texts it is matched through
    view_texts: list[str]  # every tool's views, in order
    view_ids: list[int]  # their text ids (orqen_optimizer.embeddings)
    view_starts: np.ndarray  # where each tool's views start in view_texts
    name_words: frozenset[str]  # every tool's name words
    corpus: Corpus  # the tools as BM25 documents
    families: list[Family]
    utilities: Utilities  # its clocks, calculators and browsers
    tokens: int  # the tools' tokens as sent
    # Per tool index, where the views' vectors are in it, once all of them were there (rows never move).
    rows: weakref.WeakKeyDictionary[ToolIndex, np.ndarray] = field(default_factory=weakref.WeakKeyDictionary)


_kept: Lru[tuple[int, ...], ToolSet] = Lru(KEPT)
_lock = threading.Lock()


def _key(facts: Sequence[ToolFacts]) -> tuple[int, ...]:
    return tuple(map(id, facts))


def known(facts: Sequence[ToolFacts]) -> bool:
    """Whether the tool list's `ToolSet` is kept: `toolset` then returns it without building it."""
    key = _key(facts)
    with _lock:
        return key in _kept


def toolset(facts: Sequence[ToolFacts]) -> ToolSet:
    """The tool list's `ToolSet`, from the cache when the same definitions came in the same order before."""
    key = _key(facts)
    with _lock:
        found = _kept.get(key)
    if found is not None:
        return found
    built = _build(tuple(facts))
    with _lock:
        _kept.put(key, built)
    return built


def _build(facts: tuple[ToolFacts, ...]) -> ToolSet:
    views = [f.views for f in facts]
    texts = [v for tool in views for v in tool]
    return ToolSet(
        facts=facts,
        names=[f.name for f in facts],
        views=views,
        view_texts=texts,
        view_ids=[text_id(t) for t in texts],
        view_starts=np.cumsum([0, *(len(tool) for tool in views[:-1])]),
        name_words=frozenset().union(*(f.name_words for f in facts)),
        corpus=Corpus.of([f.document for f in facts]),
        families=(found := families(facts)),
        utilities=utilities(facts, found),
        tokens=sum(f.tokens for f in facts),
    )
