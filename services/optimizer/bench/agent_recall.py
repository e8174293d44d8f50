"""All-needed recall and token share of the router against plain BM25 and plain embedding top-K.

A row is one set of routing decisions (a split, a stratum): how many, the share where every
needed tool was forwarded, the mean number forwarded, the share of the pool's tool tokens they
are (tokens of the forwarded tools' JSON as sent, over the pool's), and, at the row's own mean K
(rounded), plain BM25 top-K and plain embedding top-K over the same intent text. Every method
also forwards the tools the conversation already called (a payload never refers to a tool it
no longer offers), so the baselines are held to the same rule as the router.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orqen_optimizer import embeddings, tool_router
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.tool_router import Decision, ToolRouter, must_keep
from orqen_optimizer.tools import ToolFacts

HEADER = (
    f"{'set / split':<34}{'n':>6}  {'recall':>7}  {'mean K':>7}  {'tokens':>7}  {'bm25@K':>7}  {'embed@K':>7}  {'K':>4}"
)


class MemoEmbed:
    """The encoder behind a cache: every text is embedded once for the whole benchmark, in batches.

    With a `path`, the vectors are kept there between runs (the same model's same vectors: a rerun
    of the recall tables skips the minutes the catalogue takes to embed on a loaded machine).
    """

    def __init__(self, encoder: Callable[[list[str]], np.ndarray], path: Path | None = None) -> None:
        self._encoder = encoder
        self._vectors: dict[str, np.ndarray] = {}
        self._path = path
        if path is not None and path.with_suffix(".json").exists():
            texts = json.loads(path.with_suffix(".json").read_text())
            self._vectors.update(zip(texts, np.load(path.with_suffix(".npy")), strict=True))

    def save(self) -> None:
        if self._path is not None and self._vectors:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            np.save(self._path.with_suffix(".npy"), np.stack(list(self._vectors.values())))
            self._path.with_suffix(".json").write_text(json.dumps(list(self._vectors)))

    def prefetch(self, texts: Sequence[str]) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self._encoder(missing), strict=True))

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.prefetch(texts)
        return np.stack([self._vectors[t] for t in texts])


@dataclass(frozen=True)
class Ask:
    """One routing decision to score: the request, and per needed tool the indexes that satisfy it.

    `pool`: the indexes of the tools the request holds, in its order (None: all of the set's).
    """

    row: str
    chat: dict[str, Any]
    needed: list[set[int]]
    pool: list[int] | None = None


@dataclass
class Row:
    recalled: list[bool] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    token_share: list[float] = field(default_factory=list)
    bm25: list[bool] = field(default_factory=list)
    dense: list[bool] = field(default_factory=list)


def score(
    router: ToolRouter,
    policy: RoutingPolicy,
    tools: list[Any],
    facts: list[ToolFacts],
    tokens: list[int],
    asks: list[Ask],
    memo: MemoEmbed,
    on_decision: Callable[[Ask, Decision], None] | None = None,
) -> dict[str, Row]:
    """Route every ask over its pool of `tools`; the rows, by label, in the order they first appear."""
    names = [f.name for f in facts]
    everything = list(range(len(tools)))
    decided = []
    for ask in asks:
        pool = everything if ask.pool is None else ask.pool
        decision = router.route(ask.chat, [tools[i] for i in pool], policy, [facts[i] for i in pool])
        decided.append((ask, pool, decision))
        if on_decision:
            on_decision(ask, decision)
    memo.prefetch([d.intent for _, _, d in decided])
    rows: dict[str, Row] = {}
    by_row: dict[str, list[tuple[Ask, list[int], Decision]]] = {}
    for ask, pool, decision in decided:
        by_row.setdefault(ask.row, []).append((ask, pool, decision))
    for label, routed in by_row.items():
        row = rows.setdefault(label, Row())
        k = max(1, round(statistics.mean(len(d.keep) for _, _, d in routed)))
        for ask, pool, decision in routed:
            kept = {pool[i] for i in decision.keep}
            row.recalled.append(all(group & kept for group in ask.needed))
            row.kept.append(len(kept))
            row.token_share.append(sum(tokens[i] for i in kept) / sum(tokens[i] for i in pool))
            views = [facts[i].views for i in pool]
            components = router.components(memo([decision.intent])[0], decision.intent, views)
            always = {i for i in pool if names[i] in must_keep(ask.chat)}
            row.bm25.append(all(group & (top(components.keyword, k, pool) | always) for group in ask.needed))
            row.dense.append(all(group & (top(components.dense, k, pool) | always) for group in ask.needed))
    return rows


def top(scores: np.ndarray, k: int, pool: list[int]) -> set[int]:
    """The `pool` indexes of the `k` best `scores` (one per pool tool, in pool order)."""
    return {pool[i] for i in np.argsort(-scores, kind="stable")[:k].tolist()}


def line(label: str, row: Row) -> str:
    n = len(row.recalled)
    k = max(1, round(statistics.mean(row.kept))) if n else 0
    mean = statistics.mean
    return (
        f"{label:<34}{n:>6}  {mean(row.recalled) if n else 0:>7.3f}  {mean(row.kept) if n else 0:>7.1f}  "
        f"{mean(row.token_share) if n else 0:>7.1%}  {mean(row.bm25) if n else 0:>7.3f}  "
        f"{mean(row.dense) if n else 0:>7.3f}  {k:>4}"
    )


@contextlib.contextmanager
def installed(memo: MemoEmbed) -> Iterator[None]:
    """Route and index through `memo` instead of the encoder, then put the encoder back."""
    encoders = tool_router.embed, embeddings.embed
    tool_router.embed = embeddings.embed = memo
    try:
        yield
    finally:
        tool_router.embed, embeddings.embed = encoders
        memo.save()
