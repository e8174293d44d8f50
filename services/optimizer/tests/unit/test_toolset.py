"""A request's tool list worked out once per distinct list (orqen_optimizer.toolset)."""

from __future__ import annotations

import math

import numpy as np

from orqen_optimizer.embeddings import text_id
from orqen_optimizer.keywords import BM25_B, BM25_K1, Corpus, bm25_of_queries, document, words
from orqen_optimizer.tools import tool_facts
from orqen_optimizer.toolset import toolset

from .conftest import TOOLS


def test_the_same_definitions_in_the_same_order_share_one_toolset() -> None:
    facts = [tool_facts(t) for t in TOOLS]
    again = [tool_facts(t) for t in TOOLS]  # the same definitions, parsed again: the same facts
    assert toolset(facts) is toolset(again)
    assert toolset(facts[::-1]) is not toolset(facts)
    assert toolset(facts[::-1]).names == [f.name for f in facts[::-1]]


def test_a_toolset_holds_what_the_router_would_compute_per_request() -> None:
    facts = [tool_facts(t) for t in TOOLS]
    found = toolset(facts)
    texts = [v for f in facts for v in f.views]
    assert found.view_texts == texts and found.view_ids == [text_id(t) for t in texts]
    assert found.name_words == frozenset().union(*(f.name_words for f in facts))
    assert found.tokens == sum(f.tokens for f in facts)
    starts = [0]
    for f in facts[:-1]:
        starts.append(starts[-1] + len(f.views))
    assert found.view_starts.tolist() == starts


def test_bm25_over_a_gathered_corpus_equals_bm25_over_its_documents() -> None:
    documents = [tool_facts(t).document for t in TOOLS]
    queries = [words("weather in Oslo"), words("send an email"), []]
    assert np.array_equal(bm25_of_queries(queries, Corpus.of(documents)), bm25_of_queries(queries, documents))
    assert bm25_of_queries(queries, Corpus.of([])).shape == (3, 0)


def test_bm25_over_the_sorted_pairs_is_okapi_bm25_term_by_term() -> None:
    texts = [
        "get weather for a city city weather",
        "weather alerts",
        "send email to a recipient",
        "book a flight to a city",
        "",
    ]
    queries = [words("weather in the city"), words("email email flight"), words("nothing matches"), []]
    documents = [words(t) for t in texts]
    average = sum(map(len, documents)) / len(documents)

    def okapi(query: list[str], document: list[str]) -> float:  # the textbook formula, one term at a time
        score = 0.0
        for term in set(query):
            frequency = sum(term in d for d in documents)
            count = document.count(term)
            idf = math.log(1 + (len(documents) - frequency + 0.5) / (frequency + 0.5))
            norm = BM25_K1 * (1 - BM25_B + BM25_B * len(document) / average)
            score += idf * count * (BM25_K1 + 1) / (count + norm)
        return score

    expected = [[okapi(q, d) for d in documents] for q in queries]
    assert np.allclose(bm25_of_queries(queries, Corpus.of([document(t) for t in texts])), expected, atol=1e-12)


def test_a_toolsets_rows_are_kept_per_index_once_its_vectors_are_in_it() -> None:
    from orqen_optimizer.embeddings import ToolIndex
    from orqen_optimizer.tool_router import ToolRouter

    facts = [tool_facts(t) for t in TOOLS]
    found, index = toolset(facts), ToolIndex()
    chat = {"messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}
    first = ToolRouter(index).route(chat, TOOLS, facts=facts)
    assert index in found.rows and found.rows[index].tolist() == index.rows(found.view_ids).tolist()
    assert ToolRouter(index).route(chat, TOOLS, facts=facts).keep == first.keep  # from the kept rows
    assert ToolIndex() not in found.rows  # another index has its own rows
