"""Incremental, idempotent, convergent ingest into a real (embedded) Chroma store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.errors import EmbeddingMismatchError
from citeqa.store import connect, open_index
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_folder

SENTENCES = [
    "Sparse attention cuts the cost of long sequences by {n} percent.",
    "The model was trained on {n} billion tokens of code.",
    "We evaluate on {n} benchmarks covering vision and language.",
    "Our method runs {n} times faster than the baseline on one GPU.",
]


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim, self.count = inner, inner.name, inner.dim, 0

    def embed(self, texts: Any) -> np.ndarray:
        self.count += len(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def _write_corpus(root: Path, docs: int = 8) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(docs):
        body = " ".join(s.format(n=i * 10 + j) for j, s in enumerate(SENTENCES * 3))
        (root / f"doc{i}.md").write_text(f"# Paper number {i}\n\n{body}\n")


def _ingestor(settings: Settings, embedder: Any, max_tokens: int = 60) -> Ingestor:
    client = connect(settings)
    index = open_index(client, settings.collection, embedder, create=True)
    chunker = SentenceChunker(max_tokens=max_tokens, count_tokens=embedder.count_tokens)
    return Ingestor(index, embedder, chunker, client.get_max_batch_size())


def _expected_ids(ingestor: Ingestor, root: Path) -> set[str]:
    return {
        node.node_id
        for doc in read_folder(root).documents
        for node in ingestor.chunker.chunk_document(doc)
    }


def _stored_ids(ingestor: Ingestor) -> set[str]:
    return set(ingestor.index.chunks.get(include=[])["ids"])


def test_reingest_of_unchanged_corpus_embeds_nothing(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    _write_corpus(root)
    counting = CountingEmbedder(embedder)
    ingestor = _ingestor(fresh_settings, counting)
    first = ingestor.ingest(read_folder(root))
    assert first.added == 8 and first.chunks_written > 8
    count, embedded = ingestor.index.chunks.count(), counting.count
    second = ingestor.ingest(read_folder(root))
    assert (second.unchanged, second.added, second.updated, second.deleted) == (8, 0, 0, 0)
    assert counting.count == embedded, "an unchanged corpus must not be embedded again"
    assert ingestor.index.chunks.count() == count


def test_changed_and_removed_documents_are_replaced_and_deleted(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    _write_corpus(root)
    ingestor = _ingestor(fresh_settings, embedder)
    ingestor.ingest(read_folder(root))
    (root / "doc1.md").write_text("# Paper number 1\n\nA completely new abstract. It is short.\n")
    (root / "doc2.md").unlink()
    summary = ingestor.ingest(read_folder(root))
    assert (summary.updated, summary.deleted, summary.unchanged) == (1, 1, 6)
    assert _stored_ids(ingestor) == _expected_ids(ingestor, root)
    doc2 = ingestor.index.chunks.get(where={"doc_id": "file:doc2.md"}, include=[])
    assert doc2["ids"] == []
    sentences = ingestor.index.sentences.get(
        where={"doc_id": "file:doc1.md"}, include=["documents"]
    )
    assert sorted(sentences["documents"]) == ["A completely new abstract.", "It is short."]


def test_interrupted_ingest_converges_on_rerun(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    _write_corpus(root, docs=10)
    ingestor = _ingestor(fresh_settings, embedder)

    def crash(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingestor.ingest(read_folder(root), on_batch=crash)
    assert _stored_ids(ingestor) != _expected_ids(ingestor, root)
    ingestor.ingest(read_folder(root))
    assert _stored_ids(ingestor) == _expected_ids(ingestor, root)
    chunk_ids = _stored_ids(ingestor)
    sentence_meta = ingestor.index.sentences.get(include=["metadatas"])["metadatas"] or []
    assert {m["chunk_id"] for m in sentence_meta} == chunk_ids, "no orphan or missing sentences"


def test_writes_are_batched_by_the_store_limit(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    _write_corpus(root, docs=6)
    ingestor = _ingestor(fresh_settings, embedder)
    ingestor.max_batch = 7
    sizes: list[int] = []
    for collection in (ingestor.index.chunks, ingestor.index.sentences):
        original = collection.upsert

        def recording(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            sizes.append(len(kwargs["ids"]))
            return _original(*args, **kwargs)

        object.__setattr__(collection, "upsert", recording)
    ingestor.ingest(read_folder(root))
    assert sizes and max(sizes) <= 7


def test_a_different_embedding_model_fails_fast(
    fresh_settings: Settings, embedder: Embedder
) -> None:
    ingestor = _ingestor(fresh_settings, embedder)
    assert ingestor.index.chunks.metadata["embed_model"] == embedder.name

    other = CountingEmbedder(embedder)
    other.name, other.dim = "other-model", 768
    with pytest.raises(EmbeddingMismatchError, match=r"other-model.*CITEQA_COLLECTION"):
        open_index(connect(fresh_settings), fresh_settings.collection, other, create=True)
