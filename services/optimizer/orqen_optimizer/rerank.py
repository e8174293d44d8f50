"""Stage 2: the probability that each of the best-ranked tools is one the request needs.

The fused score ranks tools well but says little about how many to keep: a gap of 0.25 means
one thing among 50 tools and another among 1,500. The reranker looks again at the best
`CANDIDATES` tools with what the fused score leaves out (how far each is behind the best,
its rank, how many tools there are, whether the intent names it, how much of the intent its
text covers) and turns that into a probability with a logistic model. K is then every
candidate at least `KEEP_PROBABILITY` likely, within the floor and the cap.

The coefficients were fitted on the benchmark's training split only
(`make bench-optimizer ARGS=--fit-reranker` prints them); features are raw, the scaling is
folded into the coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from orqen_optimizer.keywords import STOP_WORDS, words
from orqen_optimizer.tools import ToolFacts

CANDIDATES = 50
# Chosen on the training splits of `make bench-optimizer`'s multi-step tables (issue 18), a request
# holding one definition per name: 2.0% of the whole catalogue's tool tokens on single-turn asks,
# steps included (0.0005: 2.3%, over the 2% budget); on small pools the router's token cap
# (tool_router.TOKEN_SHARE_CAP) bounds what it adds.
KEEP_PROBABILITY = 0.001
FEATURES = (
    "fused",
    "behind best fused",
    "dense",
    "behind best dense",
    "keyword / best keyword",
    "name words in the intent",
    "intent words in the tool's text",
    "log(1 + rank)",
    "log(tools)",
)
COEFFICIENTS = np.array([-42.2243, -5.9187, 33.3835, -4.8409, 12.2252, 1.216, -0.2792, -0.7812, -0.4066])
INTERCEPT = 0.1299


def features(
    intent: str,
    facts: Sequence[ToolFacts],
    fused: np.ndarray,
    dense: np.ndarray,
    keyword: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """One row per candidate (indexes into the request's tools, best fused first), FEATURES columns."""
    asked = {w for w in words(intent) if w not in STOP_WORDS}
    best_keyword = float(keyword.max(initial=0.0)) or 1.0
    best_fused, best_dense = float(fused[candidates[0]]), float(dense.max(initial=0.0))
    size = math.log(len(facts))
    rows = np.empty((len(candidates), len(FEATURES)))
    rows[:, 0] = fused[candidates]
    rows[:, 1] = best_fused - rows[:, 0]
    rows[:, 2] = dense[candidates]
    rows[:, 3] = best_dense - rows[:, 2]
    rows[:, 4] = keyword[candidates] / best_keyword
    tools = [facts[i] for i in candidates.tolist()]
    rows[:, 5] = [len(tool.name_words & asked) / max(1, len(tool.name_words)) for tool in tools]
    rows[:, 6] = [len(asked & tool.words) / max(1, len(asked)) for tool in tools]
    rows[:, 7] = np.log1p(np.arange(len(candidates)))
    rows[:, 8] = size
    return rows


def probabilities(rows: np.ndarray) -> np.ndarray:
    """The logistic model's probability of each row's tool being needed."""
    return np.asarray(1.0 / (1.0 + np.exp(-(rows @ COEFFICIENTS + INTERCEPT))))


def rerank(
    intent: str, facts: Sequence[ToolFacts], fused: np.ndarray, dense: np.ndarray, keyword: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The best CANDIDATES tools by fused score, most likely needed first, and their probabilities."""
    candidates = np.argsort(-fused, kind="stable")[:CANDIDATES]
    likely = probabilities(features(intent, facts, fused, dense, keyword, candidates))
    order = np.argsort(-likely, kind="stable")
    return candidates[order], likely[order]
