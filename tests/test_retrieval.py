"""Hybrid retrieval over the real ingested bundled corpus: what each hit carries."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine import Engine
from service.retrieval import HybridRetriever

QUESTIONS = [
    "How many tokens was DeepSeek-V3 pre-trained on?",
    "randomly skipping residual blocks while training very deep networks",
    "FastV",
]


def _stored_cosine(engine: Engine, chunk_id: str, vector: np.ndarray) -> float:
    got = engine.index.chunks.get(ids=[chunk_id], include=["embeddings"])
    return float(np.dot(np.asarray(got["embeddings"][0]), vector))  # type: ignore[index]


@pytest.mark.parametrize("candidate_k", [30, 1])
def test_each_hit_carries_the_cosine_of_its_chunk_and_the_question(
    engine: Engine, candidate_k: int
) -> None:
    """From the dense search's distances, or (hits it did not return) the stored embedding;
    candidate_k=1 leaves most hits outside the dense results."""
    retriever = HybridRetriever(engine.index, engine.embedder, candidate_k, engine.settings.rrf_k)
    outside = 0
    for question in QUESTIONS:
        result = retriever.retrieve_hits(question, 10)
        for hit in result.hits:
            expected = _stored_cosine(engine, hit.chunk_id, result.query_vector)
            assert hit.dense == pytest.approx(expected, abs=1e-5)
            outside += "dense" not in hit.ranks
    if candidate_k == 1:
        assert outside > 0, "the stored-embedding path is exercised"
