"""Which of a request's tools to forward: keyword and embedding scores, fused, with an adaptive K.

Intent: the latest user message, plus the last assistant turn and the recent tool calls
and results (an agent's next step depends on what it just did). Each tool is seen through
its name (split into words), description and parameters, and through every example query
in `x-orqen-examples` (extra views: a tool scores by its best view).

Scores: BM25 over the request's tools (the keyword fast path), cosine similarity of
sentence embeddings, fused as `DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * bm25 / best_bm25`,
in [0, 1]. K: every tool within `RELATIVE_MARGIN` of the best fused score, then the floor
and the cap. Always kept besides: a tool named in `tool_choice`, tools already called in
the conversation, and tools whose results are in it, so the payload never refers to a
tool it no longer offers.

Modes (as in request logs and `x-orqen-routing`), under the account's policy "auto":
- `keyword`: one tool's keywords match far better than any other's (BM25 lead of
  `KEYWORD_LEAD`): routed without embedding the query, by the ask's content words (`STOP_WORDS`
  aside): as many tools as BM25's margin keeps, ranked by BM25 fused with the word vectors'
  similarity (`WORD_WEIGHT`, orqen_optimizer.word_vectors). Also every request of an account
  whose policy is "keyword", and a busy worker's plans.
- `semantic`: the fused scores.
- `intent_guided`: the latest user message is a bare follow-up ("yes, go ahead"), so the
  intent reaches back to the earlier user turn.
- `heuristic`: nothing matches (no keyword in common, best similarity under
  `LOW_SIMILARITY`): the scores cannot separate the tools, so the margin is doubled.
- `limit`: the account's K cap cut what the scores asked for.

The constants were chosen on the benchmark's training split only (bench/routing.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orqen_common.canonical import text_of
from orqen_optimizer.embeddings import ToolIndex, embed, embed_ahead, embed_with_spans
from orqen_optimizer.families import Family, core_additions
from orqen_optimizer.identifiers import WRITE_FILE_WORDS, bridged_names, path_words
from orqen_optimizer.keywords import STOP_WORDS, bm25, bm25_of_queries, words
from orqen_optimizer.policy import AUTO, DEFAULT_POLICY, KEYWORD, RoutingPolicy
from orqen_optimizer.rerank import KEEP_PROBABILITY, rerank
from orqen_optimizer.steps import Step, split_steps
from orqen_optimizer.tools import ToolFacts, tool_facts
from orqen_optimizer.toolset import ToolSet, toolset
from orqen_optimizer.utilities import utility_additions
from orqen_optimizer.word_vectors import list_word_vectors, word_vector

DENSE_WEIGHT = 0.75
RELATIVE_MARGIN = 0.25
KEYWORD_LEAD = 3.0
LOW_SIMILARITY = 0.3
FOLLOW_UP_WORDS = 2  # a latest user message with fewer content words than this is a follow-up
SMALL_TOOLSET = 8  # this many tools or fewer are forwarded as they are
TRACE_CANDIDATES = 20
INTENT_CHARS = 2000
# Per step of a multi-step ask: its candidates at least this likely, at most STEP_K of them (at least one).
STEP_KEEP_PROBABILITY = 0.05
STEP_K = 3
# Past STEP_K, a step keeps its candidates at least STEP_MORE_PROBABILITY likely within STEP_TOKEN_SHARE of the
# request's tool tokens: a few tools more where each is a small part of the request (a catalogue of a thousand
# tools), none where one tool is a percent of it (a hundred-tool pool). Chosen on the training splits.
STEP_MORE_PROBABILITY = 0.005
STEP_TOKEN_SHARE = 0.003
# When an ask's steps want different things (their best tools differ), each step also keeps those of its
# first TIE_CANDIDATES whose similarity is within TIE_SIMILARITY of its most similar one, within
# TIE_TOKEN_SHARE of the request's tool tokens: a catalogue holds tools of one purpose under several names
# (`weather_get`, `api_weather`, `get_current_weather`), which the step cannot tell apart and a model calls
# any of. Chosen on the training splits (docs/routing.md).
TIE_CANDIDATES = 20
TIE_SIMILARITY = 0.07
TIE_TOKEN_SHARE = 0.012
# The best HEAD tools by similarity alone and by BM25 alone are kept whatever the fusion says (at
# most HEAD_SHARE of the tools each): each score finds needed tools the other ranks low (a name the
# embedding model does not know, a paraphrase sharing no word), and fusing them can push both out.
HEAD = 10
HEAD_SHARE = 0.02
# Past the similarity head, down to KIN_DEPTH times its length, a family's tools come too, at most KIN_MAX a
# family, when KIN_KEPT of the family's tools are kept already: an MCP server's tools work together
# ("trending topics across all platforms" wants each platform's), and the model ranks a sibling a little
# below its kept kin. Chosen on the training splits (docs/routing.md).
KIN_DEPTH = 2
KIN_KEPT = 3
KIN_MAX = 2
# The ranking's K keeps at most this share of the request's tool tokens (0: no cap), and never
# fewer than TOKEN_CAP_MIN_TOOLS tools: on a pool of a hundred tools or so, a low keep probability
# would otherwise forward a fifth of it; a 50-tool pool keeps issue 4's budget (a quarter of it).
# 0.21: chosen on the training splits with KEEP_PROBABILITY 0.001 and one definition per name (docs/routing.md).
TOKEN_SHARE_CAP = 0.21
TOKEN_CAP_MIN_TOOLS = 12
# Ranked by keywords (a busy worker's plans, a keyword-mode account's), a tool's score is this much its
# word vectors' similarity to the ask's content words (orqen_optimizer.word_vectors), the rest its BM25
# relative to the best. Chosen on the training splits' busy plans (docs/routing.md).
WORD_WEIGHT = 0.8


@dataclass(frozen=True, slots=True)
class Stages:
    """The stages of issue 18 a router runs: all of them, but for the benchmark measuring each one's part."""

    steps: bool = True
    families: bool = True
    utilities: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    keep: list[int]  # indexes into the request's tools, best first
    mode: str
    k_reason: str
    intent: str
    # Every kept tool first, in `keep`'s order, then those of the ranking's first max(TRACE_CANDIDATES,
    # len(keep)) that were left out, with their fused scores: what the trace shows. Its first
    # len(keep) are the forwarded tools, which is how the dashboard and calibration read it.
    ranked: list[tuple[str, float]]
    # Why a tool was kept besides the whole ask's ranking (a step's, a family's), by tool index.
    added_because: dict[int, str] = field(default_factory=dict)
    steps: list[StepRoute] = field(default_factory=list)
    # Keywords the lexical bridges added to the ask's (identifiers.bridged_names and path_words).
    bridged: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ask:
    """What the router reads of a request's conversation (ToolRouter.ask)."""

    guided: bool  # the latest user message is a bare follow-up: the intent reaches back a turn
    intent: str
    steps: list[Step]  # its steps, when it has two or more
    queries: Callable[[], np.ndarray]  # the intent's embedding, then one row per step


@dataclass(frozen=True, slots=True)
class StepRoute:
    """One step of the ask and the tools retrieved for it, most likely first."""

    text: str
    keep: list[int]


def intent_of(messages: Any, turns: int = 1, latest_only: bool = False) -> str:
    """The latest `turns` user messages, then the last assistant turn and recent tool calls and results.

    `latest_only`: the user messages alone, without what the agent did since.
    """
    if not isinstance(messages, list):
        return ""
    parts: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        text = text_of(message.get("content"))
        if message.get("role") == "user":
            parts.insert(0, text)
            turns -= 1
            if not turns:
                break
            continue
        if latest_only:
            continue
        parts += _called(message)
        parts.append(text[:300])
    return " ".join(p for p in parts if p)[:INTENT_CHARS]


# Words that carry no request of their own: a message made of them only follows up.
_FILLER = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "no",
        "nope",
        "ok",
        "okay",
        "sure",
        "please",
        "thanks",
        "thank",
        "you",
        "do",
        "it",
        "that",
        "this",
        "go",
        "ahead",
        "on",
        "continue",
        "proceed",
        "again",
        "try",
        "same",
        "fine",
        "great",
        "good",
        "right",
        "correct",
        "now",
        "then",
        "and",
        "the",
        "a",
        "an",
        "sounds",
        "perfect",
    }
)


def is_follow_up(messages: Any) -> bool:
    """Whether the latest user message only follows up on the conversation ("yes, go ahead")."""
    if not isinstance(messages, list):
        return False
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if len(users) < 2:
        return False
    content = [w for w in words(text_of(users[-1].get("content"))) if w not in _FILLER]
    return len(content) < FOLLOW_UP_WORDS


def must_keep(chat: dict[str, Any]) -> set[str]:
    """Tools named by tool_choice, already called, or whose results are in the conversation."""
    names: set[str] = set()
    choice = chat.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        names.add(str(choice["function"].get("name", "")))
    for message in chat.get("messages") or []:
        if not isinstance(message, dict):
            continue
        names.update(_called(message))
        if message.get("role") == "tool" and message.get("name"):
            names.add(str(message["name"]))
    return names


def _called(message: dict[str, Any]) -> list[str]:
    """Names of the tools an assistant message calls."""
    return [
        str(call["function"].get("name", ""))
        for call in message.get("tool_calls") or []
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]


@dataclass(frozen=True, slots=True)
class Components:
    """Per tool: its best view's cosine similarity to the intent, and its BM25 score."""

    dense: np.ndarray
    keyword: np.ndarray

    def fused(self, dense_weight: float = DENSE_WEIGHT) -> np.ndarray:
        top = float(self.keyword.max(initial=0.0)) or 1.0
        return np.asarray(dense_weight * np.maximum(self.dense, 0.0) + (1 - dense_weight) * self.keyword / top)


class ToolRouter:
    def __init__(self, index: ToolIndex, stages: Stages = Stages()) -> None:
        self._index = index
        self._stages = stages

    def ask(self, chat: dict[str, Any], policy: RoutingPolicy = DEFAULT_POLICY, ahead: bool = False) -> Ask:
        """What the router reads of the request's conversation.

        `ahead`: the model starts on it now, on the encoder's own thread, while the caller works out
        what needs no vectors (the tool list's BM25 corpus and families, BM25); only for a caller
        planning alone in its process, so that the other core is free. Else the model runs when the
        vectors are needed.
        """
        messages = chat.get("messages")
        guided = policy.mode == AUTO and is_follow_up(messages)
        intent = intent_of(messages, turns=2 if guided else 1)
        latest = intent_of(messages, turns=1, latest_only=True)
        steps = split_steps(latest) if self._stages.steps else []
        steps = steps if len(steps) > 1 else []
        return Ask(guided, intent, steps, self._queries(intent, latest, steps, ahead))

    def _queries(self, intent: str, latest: str, steps: list[Step], ahead: bool) -> Callable[[], np.ndarray]:
        """The intent's embedding, then one row per step of `latest` (the latest user message), when called.

        The steps are read from the intent's own run of the model (each the mean of its tokens'
        states: `Encoder.with_spans`), so a multi-step ask costs one run, not two: embedding the
        steps apart cost as much as the intent again. Only a step the run did not reach (past the
        model's 256 tokens), or steps not found in the intent, are embedded on their own.
        """
        if not steps:
            if not ahead:
                return lambda: embed([intent])
            alone = embed_ahead(intent, None)
            return lambda: alone()[0][None, :]
        offset = intent.find(latest)
        if offset < 0:
            return lambda: embed([intent, *(step.text for step in steps)])
        ends = [step.start for step in steps[1:]] + [len(latest)]
        spans = [(offset + step.start, offset + end) for step, end in zip(steps, ends, strict=True)]
        if not ahead:
            return lambda: _stacked(*embed_with_spans(intent, spans), steps)
        running = embed_ahead(intent, spans)
        return lambda: _stacked(*running(), steps)

    def route(
        self,
        chat: dict[str, Any],
        tools: list[Any],
        policy: RoutingPolicy = DEFAULT_POLICY,
        facts: Sequence[ToolFacts] | None = None,
        ask: Ask | None = None,
    ) -> Decision:
        """`facts`: each tool's `tool_facts`, when the caller has them already; `ask`: `self.ask(chat, policy)`."""
        ask = ask if ask is not None else self.ask(chat, policy)
        guided, intent, steps = ask.guided, ask.intent, ask.steps
        facts = facts if facts is not None else [tool_facts(t) for t in tools]
        tool_set = toolset(facts)
        names = tool_set.names
        file_words = path_words(intent)
        bridged = bridged_names(intent, tool_set.name_words) + file_words
        step_bridged = [path_words(step.text) for step in steps]
        intent_words = words(intent)
        asked = intent_words + bridged
        step_words = [words(step.text) + added for step, added in zip(steps, step_bridged, strict=True)]
        writes = file_words == WRITE_FILE_WORDS
        queries = [asked, *step_words] + ([WRITE_FILE_WORDS] if writes else [])
        # Ranked by BM25 alone, the ask and its steps go by their content words: a step keeps its best match
        # alone (`_steps`), and one whose only words in common with a tool are "what" or "at" took that tool
        # by them. The fused ranking keeps every word: its reranker was fitted on those scores.
        by_keywords = policy.mode == KEYWORD
        alone = ""
        keyword, *step_keyword = bm25_of_queries(
            [_content(q) for q in queries] if by_keywords else queries, tool_set.corpus
        )
        writer = step_keyword.pop() if writes else None
        if by_keywords or (policy.mode == AUTO and not guided and keyword_leads(keyword)):
            if not by_keywords:  # the fast path, taken by every word's scores
                keyword, *step_keyword = bm25_of_queries([_content(q) for q in [asked, *step_words]], tool_set.corpus)
            mode = "keyword"
            fused = Components(np.zeros_like(keyword), keyword).fused(0.0)
            order, k, reason = by_margin(fused, RELATIVE_MARGIN)
            # K by the keywords' margin, as many as BM25 alone would keep; ranked with the word vectors.
            similar = word_similarity(_content(intent_words), tool_set)
            if similar is None:
                alone = "; by BM25 alone while the list's word vectors are worked out"
            else:
                fused = Components(similar, keyword).fused(WORD_WEIGHT)
                order = np.argsort(-fused, kind="stable")
            step_dense, similarity = None, None
        else:
            rows = self._rows_of(tool_set)  # before the vectors: beside the model's run, when it runs ahead
            dense, *step_dense = self._best_view(ask.queries(), tool_set.view_ids, tool_set.view_starts, rows)
            fused, similarity = Components(dense, keyword).fused(), dense
            if policy.mode == AUTO and not guided and not keyword.any() and dense.max(initial=0.0) < LOW_SIMILARITY:
                # Nothing to go on: the reranker learned from asks that match some tool.
                mode = "heuristic"
                order, k, reason = by_margin(fused, 2 * RELATIVE_MARGIN)
            else:
                mode = "intent_guided" if guided else "semantic"
                reranked, likely = rerank(intent, facts, fused, dense, keyword)
                # The reranked candidates are the best by fused score, in a new order; the rest follow.
                order = np.concatenate([reranked, np.argsort(-fused, kind="stable")[len(reranked) :]])
                k = int(np.count_nonzero(likely >= KEEP_PROBABILITY))
                reason = f"reranked: {k} of the best {len(reranked)} at least {KEEP_PROBABILITY:g} likely"
                k, reason = within_tokens(order, k, reason, facts, tool_set.tokens)
        k, reason = bounded(k, reason, len(order), policy.k_floor, policy.k_cap)
        reason += alone  # whatever bounded K, the trace says the ranking went without word vectors
        if reason.startswith("cap"):
            mode = "limit"
        keep = order[:k].tolist()
        because: dict[int, str] = {}
        if mode != "limit":
            because.update(heads(keyword, similarity, set(keep)))
            if similarity is not None:
                because.update(kin(similarity, tool_set.families, set(keep) | set(because)))
        routes = self._steps(steps, step_keyword, step_dense, facts, tool_set.tokens)
        for number, route in enumerate(routes, 1):
            fresh = [i for i in route.keep if i not in keep and i not in because]
            because.update((i, f"step {number}: {route.text[:80]}") for i in fresh)
        if writer is not None and mode != "limit":
            because.update(file_writer(writer, set(keep) | set(because)))
        if self._stages.utilities and mode != "limit":
            because.update(utility_additions(asked, tool_set.utilities, order, set(keep) | set(because)))
        required = must_keep(chat)
        if self._stages.families and mode != "limit":
            kept = keep + list(because)
            leaders = [route.keep[0] for route in routes if route.keep]
            additions = core_additions(facts, kept, order.tolist(), required, leaders, tool_set.families)
            because.update((a.tool, a.reason) for a in additions)
        if policy.k_cap and len(keep) + len(because) > policy.k_cap:  # the cap bounds what the stages add too
            because = dict(list(because.items())[: max(0, policy.k_cap - len(keep))])
            mode, reason = "limit", f"cap {policy.k_cap}"
        keep += list(because)
        required -= {names[i] for i in keep}
        if required:
            keep += [i for i in order.tolist() if names[i] in required and i not in keep]
        forwarded = set(keep)
        shown = keep + [i for i in order[: max(TRACE_CANDIDATES, len(keep))].tolist() if i not in forwarded]
        ranked = [(names[i], float(fused[i])) for i in shown]
        added_words = list(dict.fromkeys(bridged + [w for added in step_bridged for w in added]))
        return Decision(keep, mode, reason, intent, ranked, because, routes, added_words)

    def _steps(
        self,
        steps: list[Step],
        keyword: list[np.ndarray],
        dense: list[np.ndarray] | None,
        facts: Sequence[ToolFacts],
        total_tokens: int,
    ) -> list[StepRoute]:
        """Per step, its most likely tools, from its BM25 scores and similarities (None: not embedded).

        A request routed without embedding (the keyword modes) takes each step's best BM25 match.
        """
        kept: list[list[int]] = []
        tied: list[list[int]] = []
        for number, step in enumerate(steps):
            scores = keyword[number]
            if dense is None:
                keep = np.argsort(-scores, kind="stable")[:1] if scores.any() else np.zeros(0, dtype=np.int64)
            else:
                similar = dense[number]
                order, likely = rerank(step.text, facts, Components(similar, scores).fused(), similar, scores)
                keep = order[: step_k(order, likely, facts, total_tokens)]
                tied.append(ties(order, similar, facts, total_tokens))
            kept.append([int(i) for i in keep])
        if tied and len({ids[0] for ids in kept if ids}) > 1:  # the steps want different things
            kept = [ids + [i for i in more if i not in ids] for ids, more in zip(kept, tied, strict=True)]
        return [StepRoute(step.text, ids) for step, ids in zip(steps, kept, strict=True)]

    def dense(self, query: np.ndarray, views: Sequence[Sequence[str]]) -> np.ndarray:
        """Per tool, its best view's cosine similarity to `query` (the intent's embedding).

        `query` may be a matrix of several embeddings, one per row (the intent and the ask's steps):
        the result then has one row per query, and the tools' vectors are looked up once.
        """
        texts = [v for tool in views for v in tool]
        return self._best_view(query, self._index.add(texts), np.cumsum([0, *(len(tool) for tool in views[:-1])]))

    def _rows_of(self, tool_set: ToolSet) -> np.ndarray:
        """Where a request's tool views are in the index: looked up once per list."""
        rows = tool_set.rows.get(self._index)
        if rows is None:
            self._index.add(tool_set.view_texts, tool_set.view_ids)
            rows = tool_set.rows[self._index] = self._index.rows(tool_set.view_ids)
        return rows

    def _best_view(
        self, query: np.ndarray, ids: Sequence[int], starts: np.ndarray, rows: np.ndarray | None = None
    ) -> np.ndarray:
        if not len(starts) or not len(ids):
            return np.zeros((*query.shape[:-1], 0), dtype=np.float32)
        return np.maximum.reduceat(self._index.scores(query.T, ids, rows).T, starts, axis=-1)

    def components(self, query: np.ndarray, intent: str, views: Sequence[list[str]]) -> Components:
        """Both scores of every tool; `query` is the intent's embedding."""
        return Components(self.dense(query, views), bm25(words(intent), [" ".join(tool) for tool in views]))


def word_similarity(asked: list[str], tool_set: ToolSet) -> np.ndarray | None:
    """Per tool, its best view's word-vector similarity to the `asked` words (orqen_optimizer.word_vectors);
    None while the list's word vectors are worked out in the background."""
    if not tool_set.view_texts:
        return np.zeros(0, dtype=np.float32)
    vectors = list_word_vectors(tool_set, tool_set.view_texts)
    if vectors is None:
        return None
    return np.maximum.reduceat(vectors @ word_vector(" ".join(asked)), tool_set.view_starts)


def _content(query: list[str]) -> list[str]:
    """The query's words but `STOP_WORDS`."""
    return [w for w in query if w not in STOP_WORDS]


def _stacked(whole: np.ndarray, read: list[np.ndarray | None], steps: list[Step]) -> np.ndarray:
    """The intent's vector, then each step's: read from the intent's run, else (past its reach) embedded alone."""
    unread = [step.text for step, vector in zip(steps, read, strict=True) if vector is None]
    alone = iter(embed(unread)) if unread else iter(())
    return np.vstack([whole, *(next(alone) if vector is None else vector for vector in read)])


def heads(keyword: np.ndarray, dense: np.ndarray | None, kept: set[int]) -> dict[int, str]:
    """The best tools by similarity alone (None: not embedded) and by BM25 alone that `kept` lacks, with why.

    HEAD of each, at most HEAD_SHARE of the tools (a small pool's K already holds its heads).
    """
    added: dict[int, str] = {}
    head = min(HEAD, math.ceil(HEAD_SHARE * len(keyword)))
    for label, scores in (("similarity", dense), ("keywords", keyword)):
        if scores is None or not scores.any():
            continue
        for rank, i in enumerate(np.argsort(-scores, kind="stable")[:head].tolist(), 1):
            if i not in kept and i not in added:
                added[i] = f"ranks {rank} by {label} alone"
    return added


def kin(dense: np.ndarray, found: Sequence[Family], taken: set[int]) -> dict[int, str]:
    """The tools ranked within KIN_DEPTH similarity heads whose family has KIN_KEPT tools `taken`, with why.

    At most KIN_MAX of a family, best by similarity first.
    """
    depth = KIN_DEPTH * min(HEAD, math.ceil(HEAD_SHARE * len(dense)))
    family_of = {i: family for family in found for i in family.members}
    added: dict[int, str] = {}
    per_family: Counter[str] = Counter()
    for rank, i in enumerate(np.argsort(-dense, kind="stable")[:depth].tolist(), 1):
        family = family_of.get(i)
        if i in taken or family is None or per_family[family.key] >= KIN_MAX:
            continue
        kept = len(taken.intersection(family.members))
        if kept >= KIN_KEPT:
            per_family[family.key] += 1
            added[i] = f"ranks {rank} by similarity, {kept} tools of its family {family.key} kept"
    return added


def file_writer(scores: np.ndarray, taken: set[int]) -> dict[int, str]:
    """For an ask that names a file to make: the request's best tool by the words file-writing tools are
    named by alone (`scores`, their BM25), unless `taken` has it, with why.

    The ask's other words outweigh those two in its whole ranking and in its steps' ("make a web
    page about … saved at /root/html/ai.html"), so the tool that would finish the task was lost.
    """
    if not scores.any() or (best := int(np.argmax(scores))) in taken:
        return {}
    return {best: "the ask names a file to make: the best tool for " + " ".join(WRITE_FILE_WORDS)}


def step_k(order: np.ndarray, likely: np.ndarray, facts: Sequence[ToolFacts], total: int) -> int:
    """How many of a step's reranked candidates (`order`, `likely` each) to keep: at least one.

    Those at least STEP_KEEP_PROBABILITY likely, at most STEP_K; then, while they fit in STEP_TOKEN_SHARE
    of the request's `total` tool tokens, those at least STEP_MORE_PROBABILITY likely.
    """
    k = max(1, min(STEP_K, int(np.count_nonzero(likely >= STEP_KEEP_PROBABILITY))))
    more = int(np.count_nonzero(likely >= STEP_MORE_PROBABILITY))
    if more <= k or not STEP_TOKEN_SHARE:
        return k
    spent = np.cumsum([facts[i].tokens for i in order[:more].tolist()])
    return max(k, int(np.searchsorted(spent, STEP_TOKEN_SHARE * total, side="right")))


def ties(order: np.ndarray, similar: np.ndarray, facts: Sequence[ToolFacts], total: int) -> list[int]:
    """Of a step's first TIE_CANDIDATES reranked tools (`order`), those within TIE_SIMILARITY of the most similar
    one, in `order`'s order, while they fit in TIE_TOKEN_SHARE of the request's `total` tool tokens."""
    head = order[:TIE_CANDIDATES]
    near = similar[head] >= similar[head].max(initial=0.0) - TIE_SIMILARITY
    found, budget = [], TIE_TOKEN_SHARE * total
    for i in head[near].tolist():
        budget -= facts[i].tokens
        if budget < 0:
            break
        found.append(i)
    return found


def within_tokens(order: np.ndarray, k: int, reason: str, facts: Sequence[ToolFacts], total: int) -> tuple[int, str]:
    """K cut to the first tools of `order` within TOKEN_SHARE_CAP of the `total` tool tokens.

    Never below TOKEN_CAP_MIN_TOOLS tools: a request with a few tools is not worth cutting further.
    """
    if not TOKEN_SHARE_CAP or k <= TOKEN_CAP_MIN_TOOLS:
        return k, reason
    spent = np.cumsum([facts[i].tokens for i in order[:k].tolist()])
    fits = max(TOKEN_CAP_MIN_TOOLS, int(np.searchsorted(spent, TOKEN_SHARE_CAP * total, side="right")))
    if fits >= k:
        return k, reason
    return fits, f"{reason}, cut to {fits} within {TOKEN_SHARE_CAP:.0%} of the tool tokens"


def keyword_leads(keyword: np.ndarray, lead: float = KEYWORD_LEAD) -> bool:
    """Whether the best keyword match leads the second by `lead` times: the fast path needs no embedding."""
    if len(keyword) < 2:
        return False
    second, best = np.partition(keyword, len(keyword) - 2)[-2:]
    return bool(best > 0 and best >= lead * second)


def by_margin(fused: np.ndarray, margin: float) -> tuple[np.ndarray, int, str]:
    """Tools best first, and how many are within `margin` of the best score (and why)."""
    order = np.argsort(-fused, kind="stable")
    best = float(fused[order[0]]) if len(order) else 0.0
    return order, int(np.count_nonzero(fused >= best - margin)), f"within {margin:g} of the best score {best:.2f}"


def bounded(k: int, reason: str, tools: int, k_floor: int, k_cap: int) -> tuple[int, str]:
    """K within the floor and the cap (0: none), and why."""
    if k < k_floor:
        k, reason = min(k_floor, tools), f"floor {k_floor}"
    if k_cap and k > k_cap:
        k, reason = k_cap, f"cap {k_cap}"
    return k, reason


def adaptive_k(
    scores: Sequence[float] | np.ndarray, k_floor: int, k_cap: int, margin: float = RELATIVE_MARGIN
) -> tuple[list[int], str]:
    """The tools to keep by the margin rule alone, best first, and why that many."""
    fused = np.asarray(scores, dtype=np.float64)
    order, k, reason = by_margin(fused, margin)
    k, reason = bounded(k, reason, len(fused), k_floor, k_cap)
    return order[:k].tolist(), reason


def called_in(messages: Any) -> list[str]:
    """Names of the tools the conversation's assistant turns called, in order."""
    if not isinstance(messages, list):
        return []
    return [name for message in messages if isinstance(message, dict) for name in _called(message)]
