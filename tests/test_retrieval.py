"""Hybrid retrieval over the real ingested bundled corpus: what each hit carries."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from citeqa.embedding import Embedder
from service.answering.engine import FURTHER_RANKS, Engine
from service.answering.lexical_views import SnapshotIndex
from service.answering.question import Question
from service.answering.retrieval import Hit, HybridRetriever, with_further_passages

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
        result = retriever.retrieve_hits(Question.parse(question), 10)
        for hit in result.hits:
            expected = _stored_cosine(engine, hit.chunk_id, result.query_vector)
            assert hit.dense == pytest.approx(expected, abs=1e-5)
            outside += "dense" not in hit.ranks
    if candidate_k == 1:
        assert outside > 0, "the stored-embedding path is exercised"


def test_a_search_leaves_out_the_cosines_only_an_answer_reads(engine: Engine) -> None:
    """``cosines=False`` (GET /v1/search): the dense results' cosines as they came, 0.0 for
    the hits outside them, and no get of stored embeddings (no "vectors" step)."""
    retriever = HybridRetriever(engine.index, engine.embedder, 1, engine.settings.rrf_k)
    outside = 0
    for question in QUESTIONS:
        result = retriever.retrieve_hits(Question.parse(question), 10, cosines=False)
        assert "vectors" not in result.timings_ms
        for hit in result.hits:
            if "dense" in hit.ranks:
                expected = _stored_cosine(engine, hit.chunk_id, result.query_vector)
                assert hit.dense == pytest.approx(expected, abs=1e-5)
            else:
                assert hit.dense == 0.0
                outside += 1
    assert outside > 0


# numpy picks its sort/partition kernels by CPU (x86-simd-sort on AVX-512); these are the
# AVX-512 feature groups of numpy 2.x. Disabling a feature the CPU lacks is a no-op.
_NO_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"
_LEXICAL_ORDER = """
import json, sys
from service.answering.lexical_views import _Snapshot
ids, texts, questions = json.load(open(sys.argv[1]))
index = _Snapshot(ids, texts, [{} for _ in ids])
print(json.dumps([[c.id for c in index.search(q, 30)] for q in questions]))
"""


def test_the_lexical_ranking_is_the_same_under_another_cpu_kernel(
    engine: Engine, tmp_path: Path
) -> None:
    """BM25 ties (two chunks of one paper often score the same) were ordered by numpy's
    argpartition, whose AVX-512 kernel orders ties differently from the AVX2 one: the
    DeepNet question ranked another chunk first on other machines. Forced to the other
    kernel (NPY_DISABLE_CPU_FEATURES), the ranking is the same."""
    lexical = SnapshotIndex(engine.index).view()
    questions = ["What learning rate does DeepNet use?", *QUESTIONS, "deep learning model"]
    payload = tmp_path / "lexical.json"
    payload.write_text(json.dumps([lexical.ids, lexical.texts, questions]), encoding="utf-8")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": _NO_AVX512}
    run = subprocess.run(
        [sys.executable, "-c", _LEXICAL_ORDER, str(payload)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    here = [[c.id for c in lexical.search(q, 30)] for q in questions]
    assert json.loads(run.stdout) == here


NAMED = [
    ("What learning rate does DeepNet use?", "DeepNet: Scaling Transformers"),
    ("How many GPUs were used to train TinyViT?", "TinyViT: Fast Pretraining"),
    ("What accuracy does SHIKE achieve on ImageNet-LT?", "Long-Tailed Visual Recognition"),
]


@pytest.mark.parametrize(("question", "title_start"), NAMED)
def test_the_paper_a_question_names_is_retrieved(
    engine: Engine, question: str, title_start: str
) -> None:
    """Stemmed BM25 conflates "DeepNet" with "DeepNets-1M" and two dense rankings outvote the
    lexical one: the exact-name ranking keeps the named paper in the sources, and one of its
    chunks is that ranking's first (which chunk of the paper is first is not the point)."""
    hits = engine.search(question, 5)
    named = [h for h in hits if h.title.startswith(title_start)]
    assert named, [h.title for h in hits]
    assert min(h.ranks.get("names", 99) for h in named) == 1, [h.ranks for h in named]


class _Perturbed:
    """The real embedder with each vector moved by noise of norm ``size`` (then renormalised):
    int8 kernels of other CPUs change embeddings by less than int8 does fp32 (cosine 0.9995)."""

    def __init__(self, embedder: Embedder, size: float, seed: int) -> None:
        self.embedder, self.size = embedder, size
        self.rng = np.random.default_rng(seed)
        self.name, self.dim = embedder.name, embedder.dim

    def count_tokens(self, text: str) -> int:
        return self.embedder.count_tokens(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.embed(texts)
        noise = self.rng.normal(size=vectors.shape)
        noise *= self.size / np.linalg.norm(noise, axis=1, keepdims=True)
        moved = vectors + noise
        return moved / np.linalg.norm(moved, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_named_paper_survives_embedding_noise_of_another_cpu(engine: Engine, seed: int) -> None:
    """The named paper stays among the sources, first in the exact-name ranking, when the query
    embedding moves by twice the int8-vs-fp32 difference (cosine ~0.998)."""
    noisy = _Perturbed(engine.embedder, 0.06, seed)
    retriever = HybridRetriever(engine.index, noisy, engine.settings.candidate_k)
    for question, title_start in NAMED:
        hits = retriever.retrieve_hits(Question.parse(question), 5).hits
        named = [h for h in hits if h.title.startswith(title_start)]
        assert named, (question, [h.title for h in hits])
        assert min(h.ranks.get("names", 99) for h in named) == 1


def _hit(chunk_id: str, doc_id: str) -> Hit:
    return Hit(chunk_id, doc_id, doc_id, "", 0.0, "", {})


def test_further_passages_are_those_of_the_top_documents_only() -> None:
    ranked = [_hit(c, c[0]) for c in ["a1", "b1", "c1", "a2", "d1", "b2", "c2", "e1"]]
    assert [h.chunk_id for h in with_further_passages(ranked, 3)] == [
        "a1",
        "b1",
        "c1",
        "a2",
        "b2",
        "c2",
    ]  # d1 and e1: documents that did not make the top 3
    assert with_further_passages(ranked, 8) == ranked
    assert with_further_passages(ranked[:2], 3) == ranked[:2]


FURTHER_QUESTIONS = [
    "How many tokens was DeepSeek-V3 pre-trained on?",
    "What is stochastic depth?",
    "How does DeepNet stabilise training of very deep Transformers?",
    "FastV",
]


class _Reader:
    """A generator as far as retrieval cares: whether it reads further passages."""

    name = "reader"

    def __init__(self, reads_further: bool) -> None:
        self.reads_further = reads_further


def test_an_answer_reads_further_passages_of_its_top_documents(engine: Engine) -> None:
    """The extractive answer reads the top_k best chunks and the passages of their documents
    among the 2 * top_k next; a search, or an LLM's prompt, holds the top_k alone."""
    k = engine.settings.top_k
    further = 0
    for text in FURTHER_QUESTIONS:
        asked = Question.parse(text)
        wide = engine.retriever.retrieve_hits(asked, (1 + FURTHER_RANKS) * k).hits
        read = engine.retrieve(asked).hits
        top = {h.doc_id for h in wide[:k]}
        expected = wide[:k] + [h for h in wide[k:] if h.doc_id in top]
        assert [h.chunk_id for h in read] == [h.chunk_id for h in expected]
        further += len(read) - k
        assert [h.chunk_id for h in engine.search(text)] == [h.chunk_id for h in wide[:k]]
        llm = dataclasses.replace(engine, generator=_Reader(reads_further=False))  # type: ignore[arg-type]
        assert [h.chunk_id for h in llm.retrieve(asked).hits] == [h.chunk_id for h in wide[:k]]
    assert further > 0, "some top document has another passage among the next ranks"
