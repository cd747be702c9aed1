"""llama-index's default pipeline on the same corpus, questions and embedding model.

VectorStoreIndex over a fresh Chroma collection, the default node parser (SentenceSplitter with
its defaults, taken from llama-index's default transformations), ``as_retriever(
similarity_top_k=5)``. The embedding model is citeqa's own embedder wrapped in a
``BaseEmbedding`` and passed explicitly; no llama-index global is set.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import Document
from llama_index.vector_stores.chroma import ChromaVectorStore
from pydantic import PrivateAttr

from bench.measure import Samples, fastest_of, latencies_ms, percentile_runs
from citeqa.embedding import Embedder
from evals.dataset import EvalItem


class WrappedEmbedding(BaseEmbedding):
    """citeqa's embedder as a llama-index embedding model."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts).tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


@dataclass
class BaselineResult:
    """llama-index's figures, and citeqa's measured interleaved with them (same load)."""

    nodes: int
    ingest_s: Samples
    runs: list[Samples]
    citeqa_runs: list[Samples]

    @property
    def p50(self) -> Samples:
        return percentile_runs(self.runs, 50)

    @property
    def p95(self) -> Samples:
        return percentile_runs(self.runs, 95)

    @property
    def fastest(self) -> float:
        return fastest_of(self.runs)

    @property
    def citeqa_p50(self) -> Samples:
        return percentile_runs(self.citeqa_runs, 50)

    @property
    def citeqa_p95(self) -> Samples:
        return percentile_runs(self.citeqa_runs, 95)

    @property
    def citeqa_fastest(self) -> float:
        return fastest_of(self.citeqa_runs)


def build_index(
    documents: Sequence[Document], embedder: Embedder, workdir: Path
) -> tuple[VectorStoreIndex, Any]:
    """The default pipeline into a fresh Chroma collection; (index, collection)."""
    client = chromadb.PersistentClient(
        path=tempfile.mkdtemp(prefix="llamaindex-", dir=workdir),
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    collection = client.create_collection("llamaindex", embedding_function=None)
    storage = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=collection)
    )
    index = VectorStoreIndex.from_documents(
        documents, storage_context=storage, embed_model=WrappedEmbedding(embedder)
    )
    return index, collection


def run_baseline(
    documents: Sequence[Document],
    embedder: Embedder,
    citeqa_search: Callable[[str], object],
    questions: list[str],
    ingests: int,
    runs: int,
    workdir: Path,
) -> tuple[BaselineResult, Callable[[str], list[str]]]:
    """Ingest ``ingests`` times (each into a fresh collection), then time queries, alternating
    llama-index's retriever and ``citeqa_search`` question by question."""
    ingest_s = Samples("s")
    built: tuple[VectorStoreIndex, Any] | None = None
    for _ in range(ingests):
        started = time.perf_counter()
        built = build_index(documents, embedder, workdir)
        ingest_s.add(time.perf_counter() - started)
    assert built is not None
    index, collection = built
    retriever = index.as_retriever(similarity_top_k=5)
    retriever.retrieve(questions[0])
    theirs, ours = [], []
    for _ in range(runs):
        theirs.append(Samples("ms"))
        ours.append(Samples("ms"))
        for question in questions:
            theirs[-1].values.extend(latencies_ms(retriever.retrieve, [question]).values)
            ours[-1].values.extend(latencies_ms(citeqa_search, [question]).values)

    def titles(question: str) -> list[str]:
        return [str(n.node.metadata.get("title", "")) for n in retriever.retrieve(question)]

    result = BaselineResult(collection.count(), ingest_s, theirs, ours)
    return result, titles


def hit_at_k(items: Sequence[EvalItem], titles: Callable[[str], list[str]], k: int = 5) -> float:
    """Share of answerable items with any gold title among the top-k retrieved titles."""
    answerable = [item for item in items if item.gold_titles]
    hits = sum(bool(set(item.gold_titles) & set(titles(item.question)[:k])) for item in answerable)
    return hits / len(answerable) if answerable else float("nan")
