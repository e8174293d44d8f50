"""`make bench-optimizer`: tool-routing recall, tools forwarded, tool-token reduction and plan latency.

Data: the single-turn categories of the Berkeley Function Calling Leaderboard, as shipped in
the `bfcl-eval` package (orqen_optimizer.bfcl). Every distinct tool (by name) of those
categories forms one catalogue. Each question is routed over a pool that holds its own
tools (the ones its expected answer calls among them) plus others sampled from the
catalogue, for pools of 50, 200 and 500 tools, and over the whole catalogue.

Split by tool: a tool is held out for testing when its name hashes into one bucket of five;
a question belongs to the test split when every tool its answer calls is held out, to the
training split when none is. The router's constants were chosen on the training split;
the test split is the reported figure.

Per pool: all-needed-tools recall (every tool the answer calls is forwarded), mean tools
forwarded, tool-token reduction (1 - tokens of the forwarded tools / tokens of the pool),
and, side by side, plain BM25 top-K and plain embedding top-K with K = the router's mean K.
Plan latency (p50/p95, query embedding included, tool vectors already indexed) is timed
on a sample of questions with the full router.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orqen_optimizer import bfcl
from orqen_optimizer.embeddings import ToolIndex, embed, text_id
from orqen_optimizer.tokens import count_tokens
from orqen_optimizer.tool_router import ToolRouter, adaptive_k, tool_name, tool_views

POOLS = (50, 200, 500, 0)  # 0: the whole catalogue
TEST_BUCKET = 0


def split_of(needed: frozenset[str]) -> str | None:
    held_out = {text_id(name) % 5 == TEST_BUCKET for name in needed}
    if held_out == {True}:
        return "test"
    if held_out == {False}:
        return "train"
    return None


@dataclass
class Tally:
    queries: int = 0
    recalled: int = 0
    forwarded: int = 0
    tokens_pool: int = 0
    tokens_kept: int = 0
    bm25_recalled: int = 0
    dense_recalled: int = 0
    ks: list[int] = field(default_factory=list)

    def row(self, label: str) -> str:
        n = max(self.queries, 1)
        reduction = 1 - self.tokens_kept / max(self.tokens_pool, 1)
        return (
            f"{label:<22}{self.queries:>6}  {self.recalled / n:>7.3f}  {self.forwarded / n:>8.1f}  "
            f"{reduction:>9.1%}  {self.bm25_recalled / n:>10.3f}  {self.dense_recalled / n:>10.3f}"
        )


def top(scores: Sequence[float], k: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k])


def tune(all_runs: dict[int, list[Any]]) -> None:
    """Recall and mean K on the training split for a grid of the router's constants."""
    print("\ntraining split only: dense weight, margin, floor -> recall / mean K per pool")
    for weight in (0.6, 0.75, 0.9):
        for margin in (0.12, 0.18, 0.25):
            for floor in (3, 5, 8):
                cells = []
                for size, runs in all_runs.items():
                    train = [r for r in runs if r[0] == "train"]
                    hits = ks = 0
                    for _, case, pool, components, _ in train:
                        keep, _ = adaptive_k(components.fused(weight), floor, 0, margin)
                        chosen = {pool[i] for i in keep}
                        hits += case.needed <= chosen
                        ks += len(keep)
                    cells.append(f"{size}: {hits / len(train):.3f}/{ks / len(train):.1f}")
                print(f"  w={weight:<5} margin={margin:<5} floor={floor:<2} " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--tune", action="store_true", help="also print the training-split grid the constants come from"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)

    cases = [c for category in bfcl.SINGLE_TURN for c in bfcl.cases(category) if c.needed]
    catalogue: dict[str, dict[str, Any]] = {}
    for case in cases:
        for tool in case.tools:
            catalogue.setdefault(tool_name(tool), tool)
    names = sorted(catalogue)
    tokens = {name: count_tokens(json.dumps(catalogue[name])) for name in names}
    views = {name: tool_views(catalogue[name]) for name in names}
    print(f"{len(cases)} questions, {len(names)} distinct tools in the catalogue")

    index = ToolIndex()
    started = time.perf_counter()
    index.add([v for name in names for v in views[name]])
    print(f"indexed the catalogue in {time.perf_counter() - started:.1f} s (embedded once, cached by text)")
    router = ToolRouter(index)
    started = time.perf_counter()
    queries = embed([c.question for c in cases])
    print(f"embedded {len(cases)} questions in {time.perf_counter() - started:.1f} s")

    header = (
        f"{'pool / split':<22}{'n':>6}  {'recall':>7}  {'mean K':>8}  {'tok red.':>9}  {'bm25@K':>10}  {'embed@K':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    all_runs: dict[int, list[Any]] = {}
    for pool_size in POOLS:
        tallies: dict[str, Tally] = {"train": Tally(), "test": Tally()}
        runs = []
        for case, query in zip(cases, queries, strict=True):
            split = split_of(case.needed)
            if split is None:
                continue
            own = [tool_name(t) for t in case.tools]
            if pool_size:
                others = [n for n in rng.sample(names, min(len(names), pool_size + len(own))) if n not in own]
                pool = own + others[: max(0, pool_size - len(own))]
            else:
                pool = names
            components = router.components(query, case.question, [views[n] for n in pool])
            keep, _ = adaptive_k(components.fused(), 3, 0)
            runs.append((split, case, pool, components, keep))
        all_runs[pool_size or len(names)] = runs
        mean_k = round(statistics.mean(len(r[4]) for r in runs))
        for split, case, pool, components, keep in runs:
            tally = tallies[split]
            index_of = {n: i for i, n in enumerate(pool)}
            needed = {index_of[n] for n in case.needed if n in index_of}
            kept = set(keep)
            tally.queries += 1
            tally.recalled += needed <= kept
            tally.forwarded += len(kept)
            tally.tokens_pool += sum(tokens[n] for n in pool)
            tally.tokens_kept += sum(tokens[pool[i]] for i in kept)
            tally.bm25_recalled += needed <= top(components.keyword, mean_k)
            tally.dense_recalled += needed <= top(components.dense, mean_k)
        label = f"{pool_size or len(names)} tools"
        for split in ("test", "train"):
            print(tallies[split].row(f"{label} / {split}"))
        print(f"{'':<22}(baselines at K = {mean_k}, the router's mean)")

    if args.tune:
        tune(all_runs)
    print()
    latencies: dict[int, list[float]] = {}
    sample = rng.sample(cases, min(args.latency_samples, len(cases)))
    for pool_size in (50, 500, 0):
        timings = []
        for case in sample:
            own = [tool_name(t) for t in case.tools]
            others = [n for n in names if n not in own]
            pool = own + (rng.sample(others, max(0, pool_size - len(own))) if pool_size else others)
            tools = [catalogue[n] for n in pool]
            chat = {"messages": [{"role": "user", "content": case.question}]}
            started = time.perf_counter()
            router.route(chat, tools)
            timings.append((time.perf_counter() - started) * 1000)
        latencies[pool_size or len(names)] = timings
    for size, timings in latencies.items():
        q = np.percentile(timings, [50, 95])
        print(f"plan latency, {size:>5} cached tools: p50 {q[0]:6.1f} ms  p95 {q[1]:6.1f} ms  ({len(timings)} plans)")


if __name__ == "__main__":
    main()
