"""Document versions during a re-ingest: what readers see (``visible_chunks``) and how the
pipeline writes a changed document, on an in-memory Chroma."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from citeqa.embedding import Embedder
from citeqa.store import DOC_CHUNKS, INGESTED_AT, Index, open_index, visible_chunks
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_source
from tests.servers import expected_ids, store_state


def meta(doc: str, version: str, chunks: int | None, at: float = 0.0) -> dict[str, Any]:
    out: dict[str, Any] = {"doc_id": doc, "doc_hash": version}
    if chunks is not None:
        out.update({DOC_CHUNKS: chunks, INGESTED_AT: at})
    return out


def test_legacy_chunks_without_versions_stay_visible() -> None:
    assert visible_chunks([meta("a", "h1", None), meta("a", "h1", None)]) == [0, 1]


def test_a_half_written_version_is_hidden_behind_the_whole_old_one() -> None:
    rows = [meta("a", "old", 2, 1.0), meta("a", "old", 2, 1.0), meta("a", "new", 3, 2.0)]
    assert visible_chunks(rows) == [0, 1]


def test_the_newest_whole_version_wins_and_a_half_deleted_one_is_hidden() -> None:
    both = [meta("a", "old", 2, 1.0), meta("a", "new", 1, 2.0), meta("a", "old", 2, 1.0)]
    assert visible_chunks(both) == [1]
    half_deleted = [meta("a", "old", 2, 1.0), meta("a", "new", 1, 2.0)]
    assert visible_chunks(half_deleted) == [1]


def test_documents_are_independent_and_records_mid_delete_are_skipped() -> None:
    rows = [meta("a", "x", 1, 1.0), None, meta("b", "y", 2, 1.0), meta("c", "z", 1, 5.0)]
    assert visible_chunks(rows) == [0, 3]


class FailingChunks:
    """A chunk collection whose ``fail_at``-th upsert raises (an ingest that dies mid-way)."""

    def __init__(self, collection: Any, fail_at: int) -> None:
        self._collection, self._left = collection, fail_at

    def upsert(self, **kwargs: Any) -> None:
        self._left -= 1
        if self._left == 0:
            raise ConnectionError("injected: the store went away")
        self._collection.upsert(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


@pytest.fixture
def index(embedder: Embedder) -> Index:
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    return open_index(client, f"v{uuid.uuid4().hex[:12]}", embedder, create=True)


def write_doc(folder: Path, sentences: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "doc.md").write_text("# Versions\n\n" + " ".join(sentences) + "\n")
    return folder


def ingestor(index: Index, embedder: Embedder, max_batch: int = 64) -> Ingestor:
    chunker = SentenceChunker(max_tokens=48, count_tokens=embedder.count_tokens)
    return Ingestor(index, embedder, chunker, max_batch)


def shown(index: Index) -> set[str]:
    got = index.chunks.get(include=["metadatas"])
    return {got["ids"][i] for i in visible_chunks(got["metadatas"] or [])}


SENTENCES = [f"Sentence number {n} of the document talks about topic {n * 7}." for n in range(9)]


def test_a_changed_document_is_rewritten_whole_even_where_chunk_ids_stay(
    tmp_path: Path, index: Index, embedder: Embedder
) -> None:
    folder = write_doc(tmp_path / "docs", SENTENCES)
    ingestor(index, embedder).ingest(read_source(folder))
    old = expected_ids(folder, embedder, max_tokens=48)
    changed = [*SENTENCES[:-1], "Sentence number 8 of the document talks about topic 99."]
    write_doc(folder, changed)
    new = expected_ids(folder, embedder, max_tokens=48)
    kept = old.chunks & new.chunks
    assert kept and new.chunks - old.chunks  # some ids stay, some change
    summary = ingestor(index, embedder).ingest(read_source(folder))
    assert summary.chunks_written == len(new.chunks)  # the kept ids too: new version, offsets
    state = store_state(index)
    assert not state.problems
    assert set(state.chunk_ids) == new.chunks and set(state.sentence_ids) == new.sentences
    assert shown(index) == new.chunks
    hashes = {m["doc_hash"] for m in index.chunks.get(include=["metadatas"])["metadatas"] or []}
    assert len(hashes) == 1


def test_a_re_ingest_that_dies_midway_leaves_the_old_version_visible(
    tmp_path: Path, index: Index, embedder: Embedder
) -> None:
    folder = write_doc(tmp_path / "docs", SENTENCES)
    ingestor(index, embedder).ingest(read_source(folder))
    old = expected_ids(folder, embedder, max_tokens=48)
    write_doc(folder, [s.replace("talks", "speaks") for s in SENTENCES])
    new = expected_ids(folder, embedder, max_tokens=48)
    assert len(new.chunks - old.chunks) >= 2
    chunks: Any = FailingChunks(index.chunks, fail_at=2)
    with pytest.raises(ConnectionError):
        ingestor(Index(chunks, index.sentences), embedder, max_batch=1).ingest(read_source(folder))
    assert shown(index) == old.chunks  # one chunk of the new version is written, and hidden
    # Mid-run, sentences may wait for their chunk, but no chunk lacks its sentences.
    assert not [p for p in store_state(index).problems if "orphan" not in p]
    ingestor(index, embedder).ingest(read_source(folder))
    state = store_state(index)
    assert not state.problems
    assert set(state.chunk_ids) == new.chunks == shown(index)
