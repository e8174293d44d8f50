"""`make bench-learning`: what learning from called tools adds to routing recall, on BFCL multi-turn and LiveMCPBench.

Data: the multi-turn "base" category of the Berkeley Function Calling Leaderboard (200 sessions
of 3 to 5 user turns over one to three API classes, as shipped in `bfcl-eval`); each turn's
expected answer names the tools it calls, in order. A session's tools are those of its API
classes ("involved" pool) or of every class of the category ("all" pool, 8 classes, ~130 tools),
minus the functions the session excludes.

Split by session: a session whose id hashes into one bucket of five is a test session, the
others train. Training replays each training session turn by turn as an account's traffic:
every turn is planned (the router's top candidate is the ask's signature) and its expected
calls are learned exactly as accounting learns them from the request events
(orqen_accounting.tool_learning, in a real Redis), the session id being the session's. Test
turns are then planned with learning read the way the optimizer reads it: the conversation so
far holds the earlier turns' expected calls (with "ok" results), as an agent's would.

Per pool: all-needed-tools recall of the test turns with and without the learned part
("without" is the forwarded set minus the trace's learned additions, plus the tools of K they
displaced to stay within the tool-token cap, as calibration computes it; the benchmark checks
that it equals what a planner without learning forwards), mean tools
forwarded with and without, and as a control the recall of forwarding as many more tools as
learning added, taken by the router's own ranking instead ("K + n by score"): whether learning
picks better than simply forwarding more. Then the share of turns learning added a tool to, the
plan latency p50/p95 with and without learning (in this process, the Redis round trip included),
and that of the learned step alone (its Redis read and choice). Policy "auto", as an account that
changed nothing, and no A/B control traffic.

Then LiveMCPBench (bench/agent_sets.py; the wheel `make bench-learning` downloads), as an account
whose agents did the training tasks first: each of the 72 training tasks is one session of one
ask, answered by calling the tools its annotators listed (a name several servers have: the first
such tool of the pool), and learned so; each of the 18 test tasks is then planned over the 526
tools. A task is recalled when a tool of each name it needs is forwarded, as bench/routing.py
counts it, and plain BM25 and embedding top-K at the learned plans' mean K are printed beside:
whether what an account's earlier tasks taught carries to tasks it has not seen.

`--tune` first prints the training-split grid the learned step's thresholds are checked on: the
training sessions split again (one in five validates), recall and tools forwarded per minimum
probability (orqen_optimizer.learned.MIN_PROBABILITY), on the "all" pool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import agent_recall
import agent_sets
import numpy as np
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from orqen.v1 import common_pb2, events_pb2
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_optimizer import bfcl, learned, tool_router, word_vectors
from orqen_optimizer.embeddings import ToolIndex, embed, text_id
from orqen_optimizer.learned import LearnedUsage
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import RoutingPolicy
from orqen_optimizer.tokens import count_tokens
from orqen_optimizer.tool_router import ToolRouter
from orqen_optimizer.tools import tool_facts
from orqen_testing.servers import claimed_redis_db, shared_servers

CATEGORY = "multi_turn_base"
TEST_BUCKET = 0
ACCOUNT = "00000000-0000-4000-8000-00000000bfc1"
POLICY = RoutingPolicy(ab_control_share=0.0)
Offer = Callable[["Session"], list[dict[str, Any]]]  # the tools a session's requests carry


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    classes: list[str]
    excluded: frozenset[str]
    turns: list[list[dict[str, Any]]]  # each turn's user messages
    calls: list[list[str]]  # each turn's expected tool calls, by name, in order

    @property
    def split(self) -> str:
        return "test" if text_id(self.id) % 5 == TEST_BUCKET else "train"


def class_tools() -> dict[str, list[dict[str, Any]]]:
    """Each API class's functions as OpenAI tools."""
    docs = resources.files("bfcl_eval") / "data" / "multi_turn_func_doc"
    return {
        cls: [bfcl.to_tool(f) for f in bfcl.json_lines(docs / f"{doc}.json")]
        for cls, doc in bfcl.MULTI_TURN_CLASSES.items()
    }


def sessions() -> list[Session]:
    data = resources.files("bfcl_eval") / "data"
    answers = {
        a["id"]: a["ground_truth"]
        for a in bfcl.json_lines(data / "possible_answer" / f"{bfcl.VERSION}_{CATEGORY}.json")
    }
    return [
        Session(
            id=entry["id"],
            classes=entry["involved_classes"],
            excluded=frozenset(entry.get("excluded_function", [])),
            turns=entry["question"],
            calls=[[bfcl.tool_name(call.split("(", 1)[0]) for call in turn] for turn in answers[entry["id"]]],
        )
        for entry in bfcl.json_lines(data / f"{bfcl.VERSION}_{CATEGORY}.json")
    ]


def offered(session: Session, pool: str, by_class: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    classes = session.classes if pool == "involved" else list(by_class)
    return [t for cls in classes for t in by_class[cls] if t["function"]["name"] not in session.excluded]


def conversation(session: Session, turn: int) -> list[dict[str, Any]]:
    """The messages of the session up to `turn`'s user messages, earlier turns answered by their expected calls."""
    messages: list[dict[str, Any]] = []
    for done in range(turn):
        messages += session.turns[done]
        for i, name in enumerate(session.calls[done]):
            call_id = f"call_{done}_{i}"
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call_id, "content": "ok"},
            ]
    return messages + session.turns[turn]


def event(session: Session, turn: int, tools: Sequence[dict[str, Any]], trace: Any) -> events_pb2.RequestCompleted:
    """The request event of a turn answered by its expected calls, as the edge would publish it."""
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=f"{session.id}/{turn}", account_id=ACCOUNT, session_id=session.id, ingress="openai"
        ),
        trace=trace,
        tools_called=session.calls[turn],
        tools_offered=[t["function"]["name"] for t in tools],
    )


@dataclass
class Tally:
    turns: int = 0
    recalled_with: int = 0
    recalled_without: int = 0
    recalled_more_by_score: int = 0
    forwarded_with: int = 0
    forwarded_without: int = 0
    token_share_with: float = 0.0  # summed over turns: the forwarded tools' share of the offered tools' tokens
    token_share_without: float = 0.0
    learned_turns: int = 0
    plan_ms: list[float] = field(default_factory=list)
    plan_ms_unlearned: list[float] = field(default_factory=list)
    learned_ms: list[float] = field(default_factory=list)

    def row(self, pool: str) -> str:
        n = self.turns or 1
        return (
            f"| {pool} | {self.turns} | {self.recalled_without / n:.1%} | {self.recalled_with / n:.1%} | "
            f"{self.recalled_more_by_score / n:.1%} | "
            f"{self.forwarded_without / n:.1f} | {self.forwarded_with / n:.1f} | "
            f"{self.token_share_without / n:.2%} | {self.token_share_with / n:.2%} | "
            f"{self.learned_turns / n:.1%} | {_percentiles(self.plan_ms)} | {_percentiles(self.plan_ms_unlearned)} | "
            f"{_percentiles(self.learned_ms)} |"
        )


def _percentiles(ms: list[float]) -> str:
    return f"{statistics.median(ms):.1f} / {statistics.quantiles(ms, n=20)[-1]:.1f}" if len(ms) >= 20 else "-"


async def train(planner: Planner, store: ToolLearningStore, train_sessions: list[Session], offer: Offer) -> int:
    """Learn every training turn's expected calls; how many turns taught."""
    taught = 0
    for session in train_sessions:
        tools = offer(session)
        for turn in range(len(session.turns)):
            _, _, trace = planner.plan({"messages": conversation(session, turn), "tools": tools}, POLICY, ACCOUNT)
            taught += await store.learn([event(session, turn, tools, trace)])
    return taught


def evaluate(
    planner: Planner,
    unlearned: Planner,
    usage: LearnedUsage,
    test_sessions: list[Session],
    offer: Offer,
    same: Callable[[str], str] = str,
) -> Tally:
    """Recall and tools forwarded of every test turn; `unlearned` plans the same turns without learning,
    and `usage` (the planner's learned usage) repeats the learned step alone, to time it. A needed tool
    is recalled by any forwarded tool of its `same` name."""
    tally = Tally()
    for session in test_sessions:
        tools = offer(session)
        # As bench/routing.py counts a pool's tool tokens: each tool's JSON as the caller sends it.
        tokens = {t["function"]["name"]: count_tokens(json.dumps(t)) for t in tools}
        offered_tokens = sum(tokens.values())
        for turn, needed in enumerate(session.calls):
            if not needed:
                continue
            chat = {"messages": conversation(session, turn), "tools": tools}
            started = time.perf_counter()
            forwarded, _, trace = planner.plan(chat, POLICY, ACCOUNT)
            tally.plan_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            plain, _, _ = unlearned.plan(chat, POLICY, ACCOUNT)
            tally.plan_ms_unlearned.append((time.perf_counter() - started) * 1000)
            names = {t["function"]["name"] for t in forwarded["tools"]}
            without = names - {t.name for t in trace.learned} | set(trace.displaced)
            assert without == {t["function"]["name"] for t in plain["tools"]}, "forwarded, learning undone, is not K"
            ranked = [c.name for c in trace.candidates]
            offered_names = [t["function"]["name"] for t in tools]
            started = time.perf_counter()
            usage.additions(ACCOUNT, chat, offered_names, ranked, sorted(without), 0)
            tally.learned_ms.append((time.perf_counter() - started) * 1000)
            by_score = [name for name in ranked if name not in without][: len(trace.learned)]
            wanted = {same(n) for n in needed}
            tally.turns += 1
            tally.recalled_with += wanted <= {same(n) for n in names}
            tally.recalled_without += wanted <= {same(n) for n in without}
            tally.recalled_more_by_score += wanted <= {same(n) for n in without.union(by_score)}
            tally.forwarded_with += len(names)
            tally.forwarded_without += len(without)
            tally.token_share_with += sum(tokens[n] for n in names) / offered_tokens
            tally.token_share_without += sum(tokens[n] for n in without) / offered_tokens
            tally.learned_turns += bool(trace.learned)
    return tally


async def tune(
    planner: Planner,
    unlearned: Planner,
    usage: LearnedUsage,
    store: ToolLearningStore,
    train_sessions: list[Session],
    by_class: Any,
) -> None:
    """Recall and tools forwarded per minimum probability, on the training split split again."""
    inner = [s for s in train_sessions if text_id(s.id + "/tune") % 5 != 0]
    validation = [s for s in train_sessions if text_id(s.id + "/tune") % 5 == 0]
    await store.reset(ACCOUNT)
    pooled: Offer = functools.partial(offered, pool="all", by_class=by_class)
    await train(planner, store, inner, pooled)
    print(f"Training split: {len(inner)} sessions learned, {len(validation)} validate ('all' pool)")
    print(
        "| min probability | recall without | recall with | recall K + n by score | tools without | tools with "
        "| tool tokens without | with |"
    )
    print("|---|---|---|---|---|---|---|---|")
    chosen = learned.MIN_PROBABILITY
    for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
        learned.MIN_PROBABILITY = threshold
        t = evaluate(planner, unlearned, usage, validation, pooled)
        n = t.turns or 1
        print(
            f"| {threshold:g} | {t.recalled_without / n:.1%} | {t.recalled_with / n:.1%} | "
            f"{t.recalled_more_by_score / n:.1%} | {t.forwarded_without / n:.1f} | {t.forwarded_with / n:.1f} | "
            f"{t.token_share_without / n:.2%} | {t.token_share_with / n:.2%} |"
        )
    learned.MIN_PROBABILITY = chosen


async def run(redis_url: str, pools: list[str], wheel: Path | None, tuning: bool = False) -> None:
    by_class = class_tools()
    every = sessions()
    train_sessions = [s for s in every if s.split == "train"]
    test_sessions = [s for s in every if s.split == "test"]
    sync, learning = Redis.from_url(redis_url), AsyncRedis.from_url(redis_url)
    index = ToolIndex(sync)
    # Every tool's vectors first: a new toolset is otherwise forwarded whole while it is indexed.
    index.add([view for tools in by_class.values() for t in tools for view in tool_facts(t).views])
    usage = LearnedUsage(sync)
    planner = Planner(index, max_new_tools=10_000, rng=lambda: 1.0, learned=usage)
    unlearned = Planner(index, max_new_tools=10_000, rng=lambda: 1.0)
    store = ToolLearningStore(learning)
    if tuning:
        await tune(planner, unlearned, usage, store, train_sessions, by_class)
    print(
        f"BFCL {CATEGORY}: {len(train_sessions)} training sessions "
        f"({sum(len(s.turns) for s in train_sessions)} turns), {len(test_sessions)} test sessions"
    )
    print(
        "| pool | test turns | recall without | recall with | recall K + n by score | tools without | tools with "
        "| tool tokens without | with | turns learned | plan ms p50 / p95 with | without | learned step alone |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for pool in pools:
        await store.reset(ACCOUNT)
        offer: Offer = functools.partial(offered, pool=pool, by_class=by_class)
        await train(planner, store, train_sessions, offer)
        print(evaluate(planner, unlearned, usage, test_sessions, offer).row(pool))
    if wheel is not None:
        await livemcpbench(wheel, index, planner, unlearned, usage, store)
    await store.reset(ACCOUNT)
    await learning.aclose()
    sync.close()


def livemcpbench_sessions(data: agent_sets.AgentSet) -> list[Session]:
    """Each task as a session of one ask, answered by a call to a tool of each name it needs."""
    first: dict[str, str] = {}
    for tool in data.tools:
        first.setdefault(agent_sets.bare_name(tool["function"]["name"]), tool["function"]["name"])
    return [
        Session(case.id, [], frozenset(), [case.messages], [[first[n] for n in sorted(case.needed)]])
        for case in data.cases
    ]


async def livemcpbench(
    wheel: Path, index: ToolIndex, planner: Planner, unlearned: Planner, usage: LearnedUsage, store: ToolLearningStore
) -> None:
    """The test tasks planned after the account's agents did the training tasks (the module's docstring)."""
    data = agent_sets.livemcpbench(wheel)
    views = [list(tool_facts(t).views) for t in data.tools]
    index.add([v for tool in views for v in tool])
    word_vectors.prepare([v for tool in views for v in tool])
    every = livemcpbench_sessions(data)
    train_sessions = [s for s in every if s.split == "train"]
    test_sessions = [s for s in every if s.split == "test"]

    def offer(session: Session) -> list[dict[str, Any]]:
        return data.tools

    await store.reset(ACCOUNT)
    await train(planner, store, train_sessions, offer)
    tally = evaluate(planner, unlearned, usage, test_sessions, offer, agent_sets.bare_name)
    k = max(1, round(tally.forwarded_with / max(tally.turns, 1)))
    bm25, dense = baselines(index, test_sessions, data.tools, views, k)
    print(
        f"\nLiveMCPBench: {len(train_sessions)} training tasks learned, {len(test_sessions)} test tasks, "
        f"{len(data.tools)} tools"
    )
    print(
        "| tools offered | test tasks | recall without | recall with | recall K + n by score | tools without "
        "| tools with | tool tokens without | with | tasks learned | plan ms p50 / p95 with | without "
        "| learned step alone |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(tally.row(f"the pool's {len(data.tools)} tools"))
    print(f"plain BM25 top-{k}: {bm25:.1%}; plain embedding top-{k}: {dense:.1%} (K: the learned plans' mean)")


def baselines(
    index: ToolIndex, sessions: list[Session], tools: list[dict[str, Any]], views: list[list[str]], k: int
) -> tuple[float, float]:
    """Plain BM25's and plain embedding's top-`k` recall of each session's first ask, by bare tool name."""
    router, names = ToolRouter(index), [agent_sets.bare_name(t["function"]["name"]) for t in tools]
    every = list(range(len(tools)))
    recalled = np.zeros(2)
    for session in sessions:
        intent = tool_router.intent_of(session.turns[0])
        components = router.components(embed([intent])[0], intent, views)
        wanted = {agent_sets.bare_name(n) for n in session.calls[0]}
        for i, scores in enumerate((components.keyword, components.dense)):
            recalled[i] += wanted <= {names[t] for t in agent_recall.top(scores, k, every)}
    bm25, dense = recalled / max(len(sessions), 1)
    return float(bm25), float(dense)


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    """An empty Redis database: ORQEN_TEST_REDIS_URL's server, else a container or an embedded server."""
    servers = shared_servers()
    try:
        with claimed_redis_db(servers.redis_url()) as url:
            yield url
    finally:
        servers.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="involved,all", help="tool pools, comma-separated: involved, all")
    parser.add_argument("--tune", action="store_true", help="first print the training-split threshold grid")
    parser.add_argument(
        "--livemcpbench",
        type=Path,
        default=Path(__file__).resolve().parents[3] / ".bench-data" / agent_sets.LIVEMCPBENCH_WHEEL,
        help="the LiveMCPBench wheel (make bench-learning downloads it); a missing file skips its table",
    )
    args = parser.parse_args()
    wheel = args.livemcpbench if args.livemcpbench.exists() else None
    with _redis() as url:
        asyncio.run(run(url, [p for p in args.pools.split(",") if p], wheel, args.tune))


if __name__ == "__main__":
    main()
