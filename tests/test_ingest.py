"""Incremental, idempotent, convergent ingest into a real (embedded) Chroma store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import chromadb
import chromadb.errors
import numpy as np
import pytest
from chromadb.api.types import Where
from chromadb.config import Settings as ChromaSettings

import ingest.readers
import ingest.run
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.errors import EmbeddingMismatchError
from citeqa.store import batches, connect, get_all, open_index, visible_chunks
from ingest.chunker import SentenceChunker
from ingest.pipeline import FILE_DIGEST, Ingestor
from ingest.readers import read_folder
from ingest.run import ingest_paths

SENTENCES = [
    "Sparse attention cuts the cost of long sequences by {n} percent.",
    "The model was trained on {n} billion tokens of code.",
    "We evaluate on {n} benchmarks covering vision and language.",
    "Our method runs {n} times faster than the baseline on one GPU.",
]


DATA = Path(__file__).parent / "data" / "r-vignettes"
REAL_FILES = ["survival-tiedtimes.pdf", "rstan-stanfit-objects.html"]


class CountingEmbedder:
    """The real embedder, counting the texts it embeds and the token counts asked for."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim, self.count = inner, inner.name, inner.dim, 0
        self.counted = 0

    def embed(self, texts: Any) -> np.ndarray:
        self.count += len(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        self.counted += 1
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
    read = read_folder(root)
    return {
        node.node_id
        for doc in read.documents
        for node in ingestor.chunker.chunk_document(doc, read.layouts.get(doc.doc_id))
    }


def _stored_ids(ingestor: Ingestor) -> set[str]:
    return set(ingestor.index.chunks.get(include=[])["ids"])


def _ingested(
    root: Path, settings: Settings, embedder: Embedder
) -> tuple[CountingEmbedder, Ingestor]:
    """A store holding the 8-document corpus written under ``root``; the embedder counts."""
    _write_corpus(root)
    counting = CountingEmbedder(embedder)
    ingestor = _ingestor(settings, counting)
    first = ingestor.ingest(read_folder(root))
    assert first.added == 8 and first.chunks_written > 8
    return counting, ingestor


def test_reingest_of_unchanged_corpus_embeds_nothing(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    counting, ingestor = _ingested(root, fresh_settings, embedder)
    count, embedded = ingestor.index.chunks.count(), counting.count
    second = ingestor.ingest(read_folder(root))
    assert (second.unchanged, second.added, second.updated, second.deleted) == (8, 0, 0, 0)
    assert counting.count == embedded, "an unchanged corpus must not be embedded again"
    assert ingestor.index.chunks.count() == count


@pytest.fixture
def extractions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the files the readers extract from now on, one entry per file."""
    seen: list[str] = []
    original = ingest.readers._extract

    def counting(kind: str, *args: Any) -> Any:
        seen.append(kind)
        return original(kind, *args)

    monkeypatch.setattr(ingest.readers, "_extract", counting)
    return seen


def _real_folder(root: Path, names: list[str] = REAL_FILES) -> Path:
    root.mkdir(parents=True)
    for name in names:
        shutil.copy(DATA / name, root / name)
    (root / "notes.md").write_text("# Notes\n\nThe sandwich package estimates covariances.\n")
    return root


def test_unchanged_reingest_of_real_files_extracts_chunks_and_embeds_nothing(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder, extractions: list[str]
) -> None:
    root = _real_folder(tmp_path / "docs")
    counting = CountingEmbedder(embedder)
    ingestor = _ingestor(fresh_settings, counting)
    first = ingestor.ingest_path(root)
    assert first.added == 3 and len(extractions) == 3
    stored, embedded, counted = _stored_ids(ingestor), counting.count, counting.counted
    sentences = ingestor.index.sentences.count()
    extractions.clear()

    again = ingestor.ingest_path(root)
    assert (again.documents, again.unchanged, again.added, again.updated) == (3, 3, 0, 0)
    assert extractions == [], "no file whose bytes did not change is extracted"
    assert (counting.count, counting.counted) == (embedded, counted), "nor chunked, nor embedded"
    assert _stored_ids(ingestor) == stored and ingestor.index.sentences.count() == sentences

    # New bytes, same text: read again, nothing embedded, and the next run reads nothing.
    with (root / "notes.md").open("a") as handle:
        handle.write("\n")
    touched = ingestor.ingest_path(root)
    assert extractions == ["text"] and counting.count == embedded and touched.unchanged == 3
    extractions.clear()
    assert ingestor.ingest_path(root).unchanged == 3 and extractions == []

    # Changed and removed files are read, replaced and deleted as before.
    (root / "notes.md").write_text("# Notes\n\nA new note. It is short.\n")
    (root / "survival-tiedtimes.pdf").unlink()
    changed = ingestor.ingest_path(root)
    assert (changed.updated, changed.deleted, changed.unchanged) == (1, 1, 1)
    assert extractions == ["text"]
    assert _stored_ids(ingestor) == _expected_ids(ingestor, root)


def test_a_store_without_file_digests_is_read_once_then_skipped(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder, extractions: list[str]
) -> None:
    """A store written before file digests (here: digests that match no file) is read again
    once, embeds nothing, and records the digests."""
    root = _real_folder(tmp_path / "docs")
    counting = CountingEmbedder(embedder)
    ingestor = _ingestor(fresh_settings, counting)
    ingestor.ingest_path(root)
    ids = ingestor.index.chunks.get(include=[])["ids"]
    ingestor.index.chunks.update(ids=ids, metadatas=[{FILE_DIGEST: "older"}] * len(ids))
    embedded = counting.count
    extractions.clear()
    relabelled = ingestor.ingest_path(root)
    assert relabelled.unchanged == 3 and len(extractions) == 3 and counting.count == embedded
    extractions.clear()
    assert ingestor.ingest_path(root).unchanged == 3 and extractions == []


def test_a_new_chunk_budget_chunks_unchanged_files_again(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder, extractions: list[str]
) -> None:
    root = _real_folder(tmp_path / "docs", ["survival-tiedtimes.pdf"])
    _ingestor(fresh_settings, embedder, max_tokens=60).ingest_path(root)
    extractions.clear()
    wider = _ingestor(fresh_settings, embedder, max_tokens=120)
    summary = wider.ingest_path(root)
    assert len(extractions) == 2 and summary.updated == 1  # notes.md: one chunk either way
    assert _stored_ids(wider) == _expected_ids(wider, root)


def test_a_chunk_that_keeps_its_id_under_a_new_budget_joins_the_new_version(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    """A short first section is the same chunk (same place, same text, same id) under either
    budget while the long second section splits otherwise: after the re-ingest that chunk
    must belong to the new version, or the document is a mix of two versions that readers
    never show."""
    root = tmp_path / "docs"
    root.mkdir()
    long = " ".join(s.format(n=n) for n, s in enumerate(SENTENCES * 4))
    (root / "doc.md").write_text(f"# Scope\n\nA short opening.\n\n# Body\n\n{long}\n")
    _ingestor(fresh_settings, embedder, max_tokens=60).ingest_path(root)
    wider = _ingestor(fresh_settings, embedder, max_tokens=120)
    wider.ingest_path(root)
    assert _stored_ids(wider) == _expected_ids(wider, root)
    stored = wider.index.chunks.get(include=["metadatas"])
    assert len(visible_chunks(stored["metadatas"] or [])) == len(stored["ids"])


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


@pytest.mark.parametrize("rerun", ["read whole", "skipping files held whole"])
def test_interrupted_ingest_converges_on_rerun(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder, rerun: str
) -> None:
    root = tmp_path / "docs"
    _write_corpus(root, docs=10)
    ingestor = _ingestor(fresh_settings, embedder)

    def crash(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingestor.ingest(read_folder(root), on_batch=crash)
    assert _stored_ids(ingestor) != _expected_ids(ingestor, root)
    if rerun == "read whole":
        ingestor.ingest(read_folder(root))
    else:
        ingestor.ingest_path(root)
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


def test_plan_reads_the_existing_records_in_pages(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    counting, ingestor = _ingested(root, fresh_settings, embedder)
    ingestor.read_page = 3  # several pages per collection
    limits: list[int] = []
    for collection in (ingestor.index.chunks, ingestor.index.sentences):
        original = collection.get

        def recording(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            limits.append(kwargs.get("limit") or 0)
            return _original(*args, **kwargs)

        object.__setattr__(collection, "get", recording)
    embedded = counting.count
    again = ingestor.ingest(read_folder(root))
    assert (again.unchanged, again.added, again.updated) == (8, 0, 0)
    assert counting.count == embedded, "every page was read: nothing is embedded again"
    assert len(limits) > 2 and 0 < max(limits) <= 3, "the plan reads in pages"
    for name in ("doc2.md", "doc5.md", "doc7.md"):
        (root / name).unlink()
    removed = ingestor.ingest(read_folder(root))
    assert removed.deleted == 3
    assert _stored_ids(ingestor) == _expected_ids(ingestor, root)


@pytest.mark.slow
def test_a_source_of_more_than_32k_records_is_read_whole(tmp_path: Path) -> None:
    """One Chroma get of ~32k records fails in SQLite ("too many SQL variables"); the ingest
    plan reads a source's records with :func:`get_all`, in pages."""
    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.create_collection("big-source", embedding_function=None)
    ids = [f"c{i}" for i in range(33_000)]
    for group in batches(ids, client.get_max_batch_size()):
        collection.add(
            ids=group,
            embeddings=np.ones((len(group), 2), dtype=np.float32),
            metadatas=[{"source": "big", "doc_id": "d"}] * len(group),
        )
    where: Where = {"source": "big"}
    with pytest.raises(chromadb.errors.InternalError, match="too many SQL variables"):
        collection.get(where=where, include=["metadatas"])  # why get_all pages
    got = get_all(collection, ["metadatas"], where)
    assert sorted(got.ids) == sorted(ids) and len(got.metadatas) == len(ids)


def test_an_unchanged_reingest_does_not_load_the_embedding_model(
    tmp_path: Path, fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _real_folder(tmp_path / "docs", ["survival-tiedtimes.pdf"])
    built: list[Settings] = []
    original = ingest.run.build_embedder

    def counting(settings: Settings) -> Embedder:
        built.append(settings)
        return original(settings)

    monkeypatch.setattr(ingest.run, "build_embedder", counting)
    (first,) = ingest_paths(fresh_settings, [root])
    assert first.added == 2 and len(built) == 1
    (again,) = ingest_paths(fresh_settings, [root])
    assert again.unchanged == 2 and len(built) == 1, "nothing to embed: no model loaded"


def test_sentences_without_a_letter_get_no_record_nor_embedding(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    """A table of contents' dot leaders, a lone "2." or "}" answer nothing: the chunk keeps
    them in its text, but they are neither embedded nor stored as sentences."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "fit.md").write_text(
        "# Model fit\n\nContents\n\n1 Introduction . . . . . . . . 3\n\n"
        "The fit converged after 12 iterations. The estimate is 4.2 (SE 0.3).\n\n2.\n\n}\n"
    )
    counting = CountingEmbedder(embedder)
    ingestor = _ingestor(fresh_settings, counting)
    summary = ingestor.ingest(read_folder(root))
    sentences = ingestor.index.sentences.get(include=["documents"])["documents"] or []
    assert sorted(sentences) == sorted(
        ["Contents", "1 Introduction .", "The fit converged after 12 iterations.",
         "The estimate is 4.2 (SE 0.3)."]
    )  # fmt: skip
    assert counting.count == summary.embedded == summary.chunks_written + len(sentences)
    chunks = ingestor.index.chunks.get(include=["documents"])["documents"] or []
    assert ". . . . . . . 3" in "".join(chunks) and "}" in "".join(chunks)
