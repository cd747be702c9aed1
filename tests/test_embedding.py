"""The default embedder: a query embedded alone equals the same text embedded in a batch."""

from __future__ import annotations

import numpy as np

from citeqa.embedding import Embedder

TEXTS = [
    "What is FastV?",
    "How many tokens was DeepSeek-V3 pre-trained on, and with which optimizer settings?",
    "GLM-130B",
]


def test_one_text_alone_equals_the_batched_embedding(embedder: Embedder) -> None:
    batched = embedder.embed(TEXTS)  # padded to the longest text, then mean-pooled over the mask
    for row, text in zip(batched, TEXTS, strict=True):
        alone = embedder.embed([text])
        assert alone.shape == (1, embedder.dim) and alone.dtype == np.float32
        np.testing.assert_allclose(alone[0], row, atol=1e-5)
        assert abs(float(np.linalg.norm(alone[0])) - 1.0) < 1e-5
