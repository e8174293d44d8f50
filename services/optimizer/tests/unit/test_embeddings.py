"""The ONNX Runtime encoder gives the vectors sentence-transformers gives; its int8 graph, nearly those."""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import pytest

from orqen_optimizer import embeddings, onnx_export

from .conftest import recording_runs


@functools.cache
def float32_encoder() -> embeddings.Encoder:
    model = embeddings.model_path()
    return embeddings.Encoder(model, onnx_export.ensure_graph(model, onnx_export.cache_dir()))


def test_the_onnx_encoder_matches_sentence_transformers_truncation_included() -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(embeddings.model_path()), device="cpu")
    # Different lengths (sentence-transformers pads them in one batch), one past the 256-token limit, an empty text.
    texts = ["What is the weather like in Boston?", "a", "convert 20 EUR to USD " * 200, ""]
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    vectors = float32_encoder()(texts)
    assert vectors.shape == (4, embeddings.DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(vectors, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_int8_graph_the_service_runs_points_where_the_float_graph_does(tools: list[dict[str, Any]]) -> None:
    asks = [
        "What's the weather in Oslo tomorrow?",
        "Convert 250 euros to Japanese yen",
        "Book me a flight from Boston to Denver next Friday, then find a hotel near the airport",
        "Remind me to call the dentist at 9",
        "How is AAPL trading right now?",
    ]
    descriptions = [t["function"]["description"] for t in tools]
    assert embeddings.encoder().name == "all-MiniLM-L6-v2-int8"  # the default
    int8, float32 = embeddings.embed(asks + descriptions), float32_encoder()(asks + descriptions)
    assert int8.dtype == np.float32 and np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(int8, float32, atol=1e-4)  # another graph did run
    assert (np.sum(int8 * float32, axis=1) > 0.97).all()
    # Each ask finds the same tool first under either graph.
    first = [(v[: len(asks)] @ v[len(asks) :].T).argmax(axis=1).tolist() for v in (int8, float32)]
    assert first[0] == first[1] == [0, 1, 2, 9, 6]


def test_a_texts_vector_does_not_depend_on_the_texts_embedded_with_it() -> None:
    # The int8 graph quantises activations per run: batched, a text's vector would follow its batch.
    texts = ["get the weather for a city", "convert an amount between currencies " * 8, "send an email"]
    together = embeddings.embed(texts)
    assert all(np.array_equal(together[i], embeddings.embed([text])[0]) for i, text in enumerate(texts))
    assert np.array_equal(embeddings.embed(texts[::-1])[::-1], together)


def test_one_run_gives_the_texts_vector_and_each_spans() -> None:
    text = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese and email it to Ana."
    spans = [(0, 33), (40, 83), (88, len(text))]
    whole, read = embeddings.embed_with_spans(text, spans)
    assert np.allclose(whole, embeddings.embed([text])[0], atol=1e-5)
    vectors = np.vstack([v for v in read if v is not None])
    assert vectors.shape == (3, embeddings.DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Read in context, the hotel and the translation spans are still nearest their own words.
    alone = embeddings.embed([text[start:end] for start, end in spans])
    similarity = vectors @ alone.T
    assert similarity[0].argmax() == 0 and similarity[1].argmax() == 1


def test_a_span_past_the_models_input_has_no_vector() -> None:
    text = "convert 20 EUR to USD " * 100 + "then email Ana"
    _, read = embeddings.embed_with_spans(text, [(0, 22), (len(text) - 14, len(text))])
    assert read[0] is not None and read[1] is None


def test_a_run_ahead_gives_the_vectors_of_a_run_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = embeddings.encoder()
    recording = recording_runs(monkeypatch)
    text = "Find a hotel in Lisbon for Friday, then translate the booking text into Portuguese"
    spans = [(0, 40), (40, len(text))]
    whole, read = encoder.ahead(text, spans)()
    alone, _ = encoder.ahead(text, None)()
    assert recording.threads == ["embedding-ahead", "embedding-ahead"]
    in_line, in_line_read = encoder.with_spans(text, spans)
    assert recording.threads[-1] == threading.current_thread().name
    assert np.array_equal(whole, in_line) and all(np.array_equal(a, b) for a, b in zip(read, in_line_read, strict=True))  # type: ignore[arg-type]
    assert np.array_equal(alone, encoder([text])[0])


def test_a_second_run_ahead_while_one_is_under_way_runs_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = embeddings.encoder()
    recording = recording_runs(monkeypatch)
    recording.held = threading.Event()
    first = encoder.ahead("the first ask", None)  # held on the encoder's thread
    second = encoder.ahead("the second ask", None)
    assert np.array_equal(second()[0], encoder(["the second ask"])[0])
    recording.held.set()
    assert np.array_equal(first()[0], encoder(["the first ask"])[0])
    assert recording.threads.count("embedding-ahead") == 1  # the second ran on this thread, the first held


def test_a_run_ahead_that_fails_raises_where_its_vectors_are_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = embeddings.encoder()
    recording = recording_runs(monkeypatch)
    recording.fail = True
    collect = encoder.ahead("an ask", None)
    with pytest.raises(RuntimeError, match="the run failed"):
        collect()
    recording.fail = False
    assert np.array_equal(encoder.ahead("an ask", None)()[0], encoder(["an ask"])[0])  # the thread serves on


@pytest.mark.parametrize("share", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("queries", [0, 1, 3])  # 0: one query as a vector, not a matrix
def test_scores_are_the_queries_cosines_to_the_requests_texts_whatever_their_share(share: float, queries: int) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, embeddings.DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = embeddings.ToolIndex()
    ids = list(range(1, 401))
    index._insert(ids, vectors)
    asked = sorted(rng.choice(400, int(400 * share), replace=False).tolist(), reverse=True)  # any order
    query = rng.normal(size=(max(queries, 1), embeddings.DIMENSIONS)).astype(np.float32)
    query = query[0] if queries == 0 else query.T
    scores = index.scores(query, [ids[i] for i in asked])
    assert scores.dtype == np.float32
    assert np.allclose(scores, vectors[asked] @ query, atol=1e-5)


def test_a_texts_word_vector_is_the_mean_of_its_word_pieces_rows_without_the_model() -> None:
    from orqen_optimizer.word_vectors import word_vector

    rain, weather, invoice = (word_vector(t) for t in ("rain umbrella", "weather forecast", "invoice payment"))
    assert np.isclose(np.linalg.norm(rain), 1.0) and rain.dtype == np.float32
    assert rain @ weather > rain @ invoice + 0.2  # the model's own table places words by their sense
    assert not word_vector("").any()  # no word piece, no direction


def test_a_lists_word_vectors_are_kept_by_the_list_and_a_new_lists_worked_out_in_the_background() -> None:
    from orqen_optimizer import word_vectors

    few = ["weather forecast", "invoice payment"]
    one, another = object(), object()
    kept = word_vectors.list_word_vectors(one, few)  # two texts never seen: worked out in line
    assert kept is not None and kept.shape == (2, embeddings.DIMENSIONS)
    assert np.allclose(kept[0], word_vectors.word_vector("weather forecast"), atol=1e-3)  # kept in float16
    assert word_vectors.list_word_vectors(one, few) is kept
    assert word_vectors.list_word_vectors(another, few) is not kept  # another list: its own matrix

    many = [f"tool number {i} reads the {i}th report" for i in range(word_vectors.IN_LINE_TEXTS + 1)]
    new = object()
    assert word_vectors.list_word_vectors(new, many) is None  # too many never seen: not in the plan's time
    under_way = word_vectors.pending(new)
    assert under_way is not None
    worked_out = under_way.result(timeout=30)
    assert word_vectors.list_word_vectors(new, many) is worked_out and worked_out.shape == (len(many), 384)
    assert word_vectors.pending(new) is None
