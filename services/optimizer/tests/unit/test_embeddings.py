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
