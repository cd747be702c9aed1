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


def test_idle_onnx_threads_sleep_rather_than_spin() -> None:
    """Spinning threads burn CPU that a shared machine's other work (and the ingest's own
    store writes) needs; the vectors are the same either way."""
    from citeqa.embedding import MiniLMOnnxEmbedder

    options = MiniLMOnnxEmbedder(threads=2)._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
