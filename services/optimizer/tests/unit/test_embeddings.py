"""The ONNX Runtime encoder gives the vectors sentence-transformers gives."""

from __future__ import annotations

import numpy as np

from orqen_optimizer import embeddings


def test_the_onnx_encoder_matches_sentence_transformers_padding_and_truncation_included() -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(embeddings.model_path()), device="cpu")
    # One batch: different lengths (padding), one past the 256-token limit (truncation), an empty text.
    texts = ["What is the weather like in Boston?", "a", "convert 20 EUR to USD " * 200, ""]
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    vectors = embeddings.embed(texts)
    assert vectors.shape == (4, embeddings.DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(vectors, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


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
