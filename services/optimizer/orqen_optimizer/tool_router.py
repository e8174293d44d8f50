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

The constants were chosen on the benchmark's training split only (bench/routing.py).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from orqen_common.canonical import text_of
from orqen_optimizer.embeddings import ToolIndex, embed

DENSE_WEIGHT = 0.75
RELATIVE_MARGIN = 0.25
BM25_K1, BM25_B = 1.2, 0.75
SMALL_TOOLSET = 8  # this many tools or fewer are forwarded as they are
INTENT_CHARS = 2000
_WORDS = re.compile(r"[A-Za-z]+|\d+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class Decision:
    keep: list[int]  # indexes into the request's tools, best first
    mode: str
    k_reason: str
    intent: str
    ranked: list[tuple[str, float]]  # every routable tool by fused score, best first


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(_CAMEL.sub(" ", text))]


def tool_views(tool: Any) -> list[str]:
    """The texts a tool is matched through: its description view, then its example queries.

    Kept per tool content: agents send the same tools with every request.
    """
    try:
        return list(_views(orjson.dumps(tool)))
    except TypeError:  # not JSON-serialisable as it is: computed, not kept
        return _compute_views(tool)


@functools.lru_cache(maxsize=50_000)
def _views(serialised: bytes) -> tuple[str, ...]:
    return tuple(_compute_views(orjson.loads(serialised)))


def _compute_views(tool: Any) -> list[str]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict):
        return [""]
    name = str(function.get("name", ""))
    parts = [name.replace("_", " ").replace(".", " "), str(function.get("description") or "")]
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if isinstance(properties, dict):
        for prop, schema in properties.items():
            described = schema.get("description", "") if isinstance(schema, dict) else ""
            parts.append(f"{prop.replace('_', ' ')} {described}")
    examples = function.get("x-orqen-examples")
    extra = [str(e) for e in examples if isinstance(e, str)] if isinstance(examples, list) else []
    return [". ".join(p for p in parts if p)[:1000], *extra]


def tool_name(tool: Any) -> str:
    function = tool.get("function") if isinstance(tool, dict) else None
    return str(function.get("name", "")) if isinstance(function, dict) else ""


def intent_of(messages: Any) -> str:
    """The latest user message, then the last assistant turn and recent tool calls and results."""
    if not isinstance(messages, list):
        return ""
    parts: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        text = text_of(message.get("content"))
        if message.get("role") == "user":
            parts.insert(0, text)
            break
        parts += _called(message)
        parts.append(text[:300])
    return " ".join(p for p in parts if p)[:INTENT_CHARS]


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


@functools.lru_cache(maxsize=200_000)
def _terms(text: str) -> tuple[Counter[str], int]:
    found = words(text)
    return Counter(found), len(found)


def bm25(query: list[str], documents: Sequence[str]) -> list[float]:
    """Okapi BM25 of each document for the query, over these documents only."""
    if not documents:
        return []
    terms = set(query)
    parsed = [_terms(d) for d in documents]
    average = sum(length for _, length in parsed) / len(parsed) or 1.0
    # One pass collects the postings of the query's terms; document frequencies follow from them.
    postings: dict[str, list[tuple[int, int]]] = {}
    for i, (counts, _) in enumerate(parsed):
        for term in terms:
            tf = counts.get(term)
            if tf:
                postings.setdefault(term, []).append((i, tf))
    n = len(parsed)
    scores = [0.0] * n
    for hits in postings.values():
        idf = math.log(1 + (n - len(hits) + 0.5) / (len(hits) + 0.5))
        for i, tf in hits:
            length = parsed[i][1]
            scores[i] += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
    return scores


@dataclass(frozen=True, slots=True)
class Components:
    """Per tool: its best view's cosine similarity to the intent, and its BM25 score."""

    dense: list[float]
    keyword: list[float]

    def fused(self, dense_weight: float = DENSE_WEIGHT) -> list[float]:
        top = max(self.keyword, default=0.0) or 1.0
        return [
            dense_weight * max(0.0, d) + (1 - dense_weight) * k / top
            for d, k in zip(self.dense, self.keyword, strict=True)
        ]


class ToolRouter:
    def __init__(self, index: ToolIndex) -> None:
        self._index = index

    def route(self, chat: dict[str, Any], tools: list[Any], k_floor: int = 3, k_cap: int = 0) -> Decision:
        intent = intent_of(chat.get("messages"))
        if len(tools) <= SMALL_TOOLSET:
            return Decision(list(range(len(tools))), "passthrough_small_toolset", "small toolset", intent, [])
        fused = self.components(embed([intent])[0], intent, [tool_views(t) for t in tools]).fused()
        keep, reason = adaptive_k(fused, k_floor, k_cap)
        required = must_keep(chat) - {tool_name(tools[i]) for i in keep}
        order = sorted(range(len(tools)), key=lambda i: -fused[i])
        keep += [i for i in order if tool_name(tools[i]) in required and i not in keep]
        ranked = [(tool_name(tools[i]), round(fused[i], 4)) for i in order]
        return Decision(keep, "semantic", reason, intent, ranked)

    def components(self, query: np.ndarray, intent: str, views: Sequence[list[str]]) -> Components:
        """Both scores of every tool; `query` is the intent's embedding."""
        flat = [v for tool in views for v in tool]
        ids = self._index.add(flat)
        by_id = self._index.scores(query, ids)
        dense, position = [], 0
        for tool in views:
            dense.append(max(by_id.get(t, 0.0) for t in ids[position : position + len(tool)]))
            position += len(tool)
        keyword = bm25(words(intent), [" ".join(tool) for tool in views])
        return Components(dense, keyword)


def adaptive_k(
    fused: Sequence[float], k_floor: int, k_cap: int, margin: float = RELATIVE_MARGIN
) -> tuple[list[int], str]:
    """The tools to keep, best first, and why that many."""
    order = sorted(range(len(fused)), key=lambda i: -fused[i])
    best = fused[order[0]] if order else 0.0
    k = sum(1 for i in order if fused[i] >= best - margin)
    reason = f"within {margin:g} of the best score {best:.2f}"
    if k < k_floor:
        k, reason = min(k_floor, len(fused)), f"floor {k_floor}"
    if k_cap and k > k_cap:
        k, reason = k_cap, f"cap {k_cap}"
    return order[:k], reason
