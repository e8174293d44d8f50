"""Stage 2: features of the best candidates and the probability that each is needed."""

from __future__ import annotations

import numpy as np

from orqen_optimizer import rerank
from orqen_optimizer.tools import tool_facts

FACTS = [
    tool_facts({"type": "function", "function": {"name": name, "description": description}})
    for name, description in [
        ("get_weather", "Current weather for a city"),
        ("get_stock_price", "Latest price of a stock ticker"),
        ("send_email", "Send an email to a recipient"),
        ("book_flight", "Book a flight between two airports"),
    ]
]
INTENT = "what is the stock price of AAPL"
DENSE = np.array([0.2, 0.7, 0.1, 0.15], dtype=np.float32)
KEYWORD = np.array([0.0, 4.0, 0.0, 0.0])
FUSED = 0.75 * DENSE + 0.25 * KEYWORD / KEYWORD.max()


def test_each_candidate_gets_one_row_of_every_feature() -> None:
    candidates = np.argsort(-FUSED, kind="stable")
    rows = rerank.features(INTENT, FACTS, FUSED, DENSE, KEYWORD, candidates)
    assert rows.shape == (4, len(rerank.FEATURES)) == (4, len(rerank.COEFFICIENTS))
    best = rows[0]
    assert candidates[0] == 1 and best[1] == 0.0 and best[4] == 1.0  # the best: nothing behind, top keyword
    assert best[5] == 2 / 3  # "stock" and "price" of get_stock_price are in the intent, "get" is not
    assert best[7] == 0.0 and rows[3][7] == np.log1p(3) and best[8] == np.log(4)


def test_the_needed_tool_comes_first_and_the_others_are_unlikely() -> None:
    order, likely = rerank.rerank(INTENT, FACTS, FUSED, DENSE, KEYWORD)
    assert sorted(order.tolist()) == [0, 1, 2, 3] and order[0] == 1
    assert likely[0] > 0.5 and list(likely) == sorted(likely, reverse=True)
    assert all(p < likely[0] / 10 for p in likely[1:])


def test_only_the_best_candidates_are_reranked() -> None:
    fused = np.linspace(1.0, 0.0, rerank.CANDIDATES + 20)
    facts = [tool_facts({"type": "function", "function": {"name": f"tool_{i}"}}) for i in range(len(fused))]
    order, likely = rerank.rerank("anything", facts, fused, fused, np.zeros_like(fused))
    assert len(order) == len(likely) == rerank.CANDIDATES and set(order) == set(range(rerank.CANDIDATES))
