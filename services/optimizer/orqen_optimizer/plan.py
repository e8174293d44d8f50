"""The optimization plan of one chat request.

Tools: a request with more than SMALL_TOOLSET tools forwards only those the router keeps
(orqen_optimizer.tool_router), in their original order, under the account's routing policy
(orqen_optimizer.policy: mode, K floor and cap, A/B share); A/B control traffic (that share
of requests) forwards them all while recording what the router would have kept (mode
"<mode>_ab_ctrl"), which measures its real recall. Tools never seen before
are embedded in the background when there are more than `max_new_tools` of them (their word
vectors worked out with them): that request goes out whole ("passthrough") and the next ones are
routed. The background work is bounded: one request queues at most `max_indexed_per_request`
tool texts and the queue holds at most `max_queued` in all, so a request with 20,000 new tools
costs the other requests' plans a few seconds of one core at most; the texts left out are queued
by later requests that carry them. The workers and replicas that see a new list at once share its
texts out: each worker claims a few at a time in Redis before it embeds them (`ToolIndex.claim`).
The account's learned tool usage may add tools beyond the router's K (orqen_optimizer.learned),
each named in the trace with its reason. A plan its worker had no turn at the model for in time
(orqen_optimizer.turns) is routed by keywords, mode `keyword_busy`. Malformed tools make the
request pass through unchanged, with the reason in the trace. Every forwarded tool has its schema
compressed (orqen_optimizer.schemas); a long conversation has its older tool outputs shrunk
(orqen_optimizer.context).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog

from orqen.v1 import optimizer_pb2
from orqen_common.routing_modes import AB_CONTROL_SUFFIX
from orqen_optimizer import word_vectors
from orqen_optimizer.chat_json import ChatJson
from orqen_optimizer.context import ContextResult, compress_context
from orqen_optimizer.embeddings import ToolIndex
from orqen_optimizer.learned import LearnedUsage
from orqen_optimizer.policy import DEFAULT_POLICY, KEYWORD, KEYWORD_BUSY, PASSTHROUGH, RoutingPolicy
from orqen_optimizer.tool_router import SMALL_TOOLSET, TOKEN_CAP_MIN_TOOLS, Ask, Decision, ToolRouter, must_keep
from orqen_optimizer.tools import ToolFacts, tool_facts
from orqen_optimizer.toolset import known, toolset

log = structlog.get_logger(__name__)
Plan = tuple[dict[str, Any], optimizer_pb2.PlanStats, optimizer_pb2.RoutingTrace]
JsonPlan = tuple[bytes | None, optimizer_pb2.PlanStats, optimizer_pb2.RoutingTrace]


# A busy plan's fewest tools (the account's floor if higher, its cap still applies): BM25 alone finds
# needed tools further down than the fused ranking does, and its own margin keeps few (docs/routing.md).
BUSY_K_FLOOR = 12
# Tool texts a worker claims, embeds and shares at a time (ToolIndex.claim): about a third of a second
# of the model, so that the workers sharing out a new list finish it together.
CLAIMED_AT_ONCE = 32


def busy_policy(policy: RoutingPolicy, k_floor: int = BUSY_K_FLOOR) -> RoutingPolicy:
    """How a plan is routed when its worker had no turn at the model for it in time: by keywords."""
    return replace(policy, mode=KEYWORD, k_floor=max(policy.k_floor, k_floor))


class Planner:
    def __init__(
        self,
        index: ToolIndex | None,
        max_new_tools: int = 4,
        rng: Callable[[], float] = random.random,
        *,
        max_indexed_per_request: int = 256,
        max_queued: int = 2048,
        learned: LearnedUsage | None = None,
    ) -> None:
        """`index` None: tool routing is off, every tool is forwarded (compressed); `learned` None: no learning."""
        self._index = index
        self._learned = learned
        self._router = ToolRouter(index) if index is not None else None
        self._max_new_tools = max_new_tools
        self._max_indexed_per_request = max_indexed_per_request
        self._max_queued = max_queued
        self._rng = rng
        self._indexing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool-indexing")
        self._queued: set[str] = set()
        self._queued_lock = threading.Lock()
        self._under_way = 0
        self._counting = threading.Lock()

    def plan(self, chat: dict[str, Any], policy: RoutingPolicy = DEFAULT_POLICY, account_id: str = "") -> Plan:
        """The request to forward, and the plan's stats and trace; `account_id` "": nothing learned applies."""
        tools = chat.get("tools")
        with self._planning() as alone:
            facts = [tool_facts(t) for t in tools] if isinstance(tools, list) and tools else None
            ask = self._ask_ahead(chat, facts, policy, alone)
            kept, context, stats, trace = self._decide(chat, facts, policy, account_id, ask)
        forwarded = chat
        if facts is not None:
            forwarded = {**forwarded, "tools": [facts[i].compressed for i in kept]}
        if context.changed:
            forwarded = {**forwarded, "messages": context.messages}
        return forwarded, stats, trace

    def plan_json(
        self, chat: ChatJson, policy: RoutingPolicy = DEFAULT_POLICY, account_id: str = "", busy: bool = False
    ) -> JsonPlan:
        """`plan` of a request given as JSON: the forwarded request as JSON, None when it is unchanged.

        `busy`: the model had no turn for this plan in time (orqen_optimizer.turns): it is ranked by
        keywords, its mode `keyword_busy`. The tools are neither parsed nor serialised again when
        their facts are known (chat_json). Raises orjson.JSONDecodeError for a tool that is not JSON after all.
        """
        read = chat.read()
        if busy:
            policy = busy_policy(policy)
        with self._planning() as alone:
            facts = chat.tools.facts() if chat.tools else None
            ask = self._ask_ahead(read, facts, policy, alone)
            kept, context, stats, trace = self._decide(read, facts, policy, account_id, ask, busy)
        if facts is None and not context.changed:
            return None, stats, trace
        tools = None if facts is None else [facts[i].compressed_json for i in kept]
        return chat.spliced(tools, context.messages if context.changed else None), stats, trace

    @property
    def routes(self) -> bool:
        """Whether tool routing is on: off, no plan runs the model."""
        return self._router is not None

    @contextlib.contextmanager
    def _planning(self) -> Iterator[bool]:
        """Counts the plans under way in this process; yields whether this one is alone."""
        with self._counting:
            self._under_way += 1
            alone = self._under_way == 1
        try:
            yield alone
        finally:
            with self._counting:
                self._under_way -= 1

    def _ask_ahead(
        self, chat: dict[str, Any], facts: list[ToolFacts] | None, policy: RoutingPolicy, alone: bool
    ) -> Ask | None:
        """The ask read and its embedding started on the encoder's thread, when that is worth it.

        That is when this plan is alone in its process (the other core is then likely idle), its
        tool list is new (working out the list's BM25 corpus, families and vectors' rows takes
        about as long as the model's run, and now runs beside it), and it will likely embed. A
        plan that turns out not to need the vectors (the keyword fast path, tools not yet indexed)
        wastes that run. Otherwise the model runs in line, when the vectors are needed: on a list
        seen before, little work is left to overlap, and with other plans under way the cores are busy.
        """
        if not alone or self._router is None or facts is None or len(facts) <= SMALL_TOOLSET:
            return None
        if policy.mode in (PASSTHROUGH, KEYWORD) or known(facts):
            return None
        return self._router.ask(chat, policy, ahead=True)

    def _decide(
        self,
        chat: dict[str, Any],
        facts: list[ToolFacts] | None,
        policy: RoutingPolicy,
        account_id: str,
        ask: Ask | None = None,
        busy: bool = False,
    ) -> tuple[list[int], ContextResult, optimizer_pb2.PlanStats, optimizer_pb2.RoutingTrace]:
        """The tools to forward (indexes), the compressed conversation, and the plan's stats and trace."""
        stats = optimizer_pb2.PlanStats(routing=PASSTHROUGH)
        trace = optimizer_pb2.RoutingTrace(mode=PASSTHROUGH, k_reason="no tools")
        kept: list[int] = []
        if facts is not None:
            kept = self._route(chat, facts, policy, stats, trace, account_id, ask, busy)
            stats.tools_input, stats.tools_output = len(facts), len(kept)
            stats.tool_tokens_in = sum([f.tokens for f in facts])
            stats.tool_tokens_out = sum([facts[i].compressed_tokens for i in kept])
        context = compress_context(chat.get("messages"))
        if context.changed:
            stats.context_compressed = True
            stats.ctx_tokens_in, stats.ctx_tokens_out = context.tokens_in, context.tokens_out
        return kept, context, stats, trace

    def _route(
        self,
        chat: dict[str, Any],
        facts: list[ToolFacts],
        policy: RoutingPolicy,
        stats: optimizer_pb2.PlanStats,
        trace: optimizer_pb2.RoutingTrace,
        account_id: str,
        ask: Ask | None,
        busy: bool = False,
    ) -> list[int]:
        """Indexes of the tools to forward; fills the routing mode and trace."""
        everything = list(range(len(facts)))
        trace.k = len(facts)
        malformed = next((i for i, f in enumerate(facts) if not f.well_formed), None)
        if malformed is not None:
            trace.k_reason = f"tool {malformed} is malformed: forwarded unchanged"
            return everything
        if self._router is None or self._index is None:
            trace.k_reason = "tool routing is off"
            return everything
        if len(facts) <= SMALL_TOOLSET:
            stats.routing = trace.mode = "passthrough_small_toolset"
            trace.k_reason = f"{len(facts)} tools or fewer than {SMALL_TOOLSET + 1}"
            return everything
        if policy.mode == PASSTHROUGH:
            trace.k_reason = "the account's routing mode is passthrough"
            return everything
        # The keyword mode never embeds: it needs no tool vectors.
        if policy.mode != KEYWORD:
            tool_set = toolset(facts)
            # A list whose rows are kept was indexed whole: nothing of it can be missing.
            known = self._index in tool_set.rows
            unseen = [] if known else self._index.missing(tool_set.view_texts, tool_set.view_ids)
        else:
            unseen = []
        if len(unseen) > self._max_new_tools:
            queued = self._index_later(unseen)
            trace.k_reason = f"indexing {queued} of {len(unseen)} new tool texts; later requests are routed"
            return everything
        decision = self._router.route(chat, facts, policy, facts, ask)
        mode = KEYWORD_BUSY if busy else decision.mode  # busy: by keywords, within the account's cap
        trace.intent, trace.k, trace.k_reason = decision.intent[:500], len(decision.keep), decision.k_reason
        if busy:
            trace.k_reason = f"the model had no turn in time, ranked by keywords: {decision.k_reason}"
        because = {facts[i].name: reason for i, reason in decision.added_because.items()}
        trace.candidates.extend(
            optimizer_pb2.ToolCandidate(name=name, score=round(score, 4), added_because=because.get(name, ""))
            for name, score in decision.ranked
        )
        trace.steps.extend(
            optimizer_pb2.RoutingStep(text=step.text[:200], tools=[facts[i].name for i in step.keep])
            for step in decision.steps
        )
        trace.bridged_words.extend(decision.bridged)
        learned, displaced = self._learned_additions(account_id, chat, facts, decision, policy, trace)
        keep = [i for i in decision.keep if i not in displaced] + learned
        # Control traffic too records the learned additions: calibration scores recall with and without them.
        if self._rng() < policy.ab_control_share:
            stats.routing = trace.mode = mode + AB_CONTROL_SUFFIX
            return everything
        stats.routing = trace.mode = mode
        return sorted(keep)

    def _learned_additions(
        self,
        account_id: str,
        chat: dict[str, Any],
        facts: list[ToolFacts],
        decision: Decision,
        policy: RoutingPolicy,
        trace: optimizer_pb2.RoutingTrace,
    ) -> tuple[list[int], set[int]]:
        """Indexes of the tools learned usage adds beyond the router's choice, and of those of its K they
        take the place of; each goes into the trace."""
        if self._learned is None:
            return [], set()
        names = [f.name for f in facts]
        kept = [names[i] for i in decision.keep]
        ranked = [name for name, _ in decision.ranked]
        added = self._learned.additions(account_id, chat, names, ranked, kept, policy.k_cap)
        taken = set(decision.keep)
        indexes = []
        for tool in added:
            index = next(i for i, name in enumerate(names) if name == tool.name and i not in taken)
            taken.add(index)
            indexes.append(index)
        trace.learned.extend(added)
        displaced = room_for(indexes, decision, facts, must_keep(chat))
        trace.displaced.extend(facts[i].name for i in displaced)
        return indexes, set(displaced)

    def close(self) -> None:
        """Drop the indexing not yet started and wait for the batch in progress."""
        self._indexing.shutdown(wait=True, cancel_futures=True)

    def _index_later(self, texts: list[str]) -> int:
        """Queue what the bounds allow of `texts` for the background; how many were queued."""
        with self._queued_lock:
            room = min(self._max_indexed_per_request, self._max_queued - len(self._queued))
            fresh = [t for t in texts if t not in self._queued][: max(room, 0)]
            self._queued.update(fresh)
        if fresh:
            self._indexing.submit(self._index_now, fresh)
        if len(fresh) < len(texts):
            log.info("new tools left for later requests to queue", new=len(texts), queued=len(fresh))
        return len(fresh)

    def _index_now(self, texts: list[str]) -> None:
        """Embed and share `texts` a few at a time, each few claimed first (ToolIndex.claim): the other
        workers that queued the same list embed the others meanwhile, and take these from Redis."""
        assert self._index is not None
        left = texts
        try:
            while left:
                mine, looked = self._index.claim(left, CLAIMED_AT_ONCE)
                if mine:
                    self._index.add(mine)
                # Their word vectors too, the other workers' texts' as well (they need no model: a tenth
                # of its time): the list's first plans ranked by keywords (a busy worker's) then have
                # them, rather than BM25 alone.
                word_vectors.prepare(left[:looked])
                left = left[looked:]
        except Exception:  # retried by a request that carries them once this worker's claims run out
            log.exception("indexing new tools failed", tools=len(texts))
        finally:
            with self._queued_lock:
                self._queued.difference_update(texts)


def room_for(learned: list[int], decision: Decision, facts: list[ToolFacts], called: set[str]) -> list[int]:
    """The tools of the router's K that make room for the `learned` ones, lowest-ranked first.

    Learning spends the router's tool tokens rather than adding to them: a learned tool goes out
    because the model is expected to call it, a tool at the ranking's tail only because the ranking
    went that far, so the tail makes way for as many tokens. Never a tool a stage added or the
    conversation called, nor below TOKEN_CAP_MIN_TOOLS ranked tools: there the learned tools are
    added (a small request is not worth cutting further). Chosen on the training sessions: against
    making way only past TOKEN_SHARE_CAP of the request's tool tokens, the same recall for fewer
    tokens (docs/routing.md).
    """
    ranked = [i for i in decision.keep if i not in decision.added_because and facts[i].name not in called]
    over = sum(facts[i].tokens for i in learned)
    displaced: list[int] = []
    while over > 0 and len(ranked) > TOKEN_CAP_MIN_TOOLS:
        displaced.append(out := ranked.pop())
        over -= facts[out].tokens
    return displaced
