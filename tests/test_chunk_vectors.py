"""CITEQA_CHUNK_VECTORS=sentence-mean: chunk vectors made of their sentences' vectors, no chunk
pass of the model; switching the setting rewrites the store (ingest/vectors.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from ingest.pipeline import Ingestor, quotable
from ingest.readers import read_source
from ingest.run import build_ingestor

DATA = Path(__file__).parent / "data" / "r-vignettes"


class RecordingEmbedder:
    """The real embedder, keeping every text it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    shutil.copy(DATA / "survival-tiedtimes.pdf", root)
    return root


def _ingestor(settings: Settings, mode: str, embedder: RecordingEmbedder) -> Ingestor:
    return build_ingestor(settings.model_copy(update={"chunk_vectors": mode}), embedder)


Stored = dict[str, tuple[str, dict[str, Any], np.ndarray]]


def _stored(ingestor: Ingestor) -> tuple[Stored, dict[str, list[np.ndarray]]]:
    """Chunk id -> (text, metadata, vector); chunk id -> its sentences' vectors."""
    got: Any = ingestor.index.chunks.get(include=["documents", "metadatas", "embeddings"])
    chunks = {
        cid: (text, dict(meta), np.asarray(vector))
        for cid, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
        )
    }
    sentences: dict[str, list[np.ndarray]] = {}
    got = ingestor.index.sentences.get(include=["metadatas", "embeddings"])
    for meta, vector in zip(got["metadatas"], got["embeddings"], strict=True):
        sentences.setdefault(str(meta["chunk_id"]), []).append(np.asarray(vector))
    return chunks, sentences


def test_sentence_mean_chunks_are_the_mean_of_their_sentences_and_never_embedded_whole(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    recording = RecordingEmbedder(embedder)
    summary = _ingestor(fresh_settings, "sentence-mean", recording).ingest_path(_folder(tmp_path))
    chunks, sentences = _stored(_ingestor(fresh_settings, "sentence-mean", recording))
    assert summary.chunks_written == len(chunks) > 3
    embedded = set(recording.texts)
    for cid, (text, meta, vector) in chunks.items():
        prefix = text[: int(meta["prefix_len"])]
        if cid not in sentences:  # no quotable sentence: the chunk is embedded whole
            assert text in embedded
            continue
        assert text not in embedded, "a chunk with sentences needs no pass of its own"
        mean = np.mean([*sentences[cid], embedder.embed([prefix])[0]], axis=0)
        cosine = float(vector @ mean / np.linalg.norm(mean))
        assert cosine > 0.999, f"{cid}: not the mean of its sentences and prefix ({cosine})"
    whole = _ingestor(
        fresh_settings.model_copy(update={"data_dir": tmp_path / "b"}),
        "embed",
        RecordingEmbedder(embedder),
    )
    assert len(recording.texts) < whole.ingest_path(_folder(tmp_path / "b")).embedded


@pytest.mark.parametrize("first, then", [("embed", "sentence-mean"), ("sentence-mean", "embed")])
def test_changing_how_chunk_vectors_are_made_rewrites_the_store(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder, first: str, then: str
) -> None:
    root = _folder(tmp_path)
    _ingestor(fresh_settings, first, RecordingEmbedder(embedder)).ingest_path(root)
    before, _ = _stored(_ingestor(fresh_settings, first, RecordingEmbedder(embedder)))
    changed = _ingestor(fresh_settings, then, RecordingEmbedder(embedder))
    summary = changed.ingest_path(root)
    assert summary.chunks_written == len(before), "every chunk is written again"
    after, sentences = _stored(changed)
    assert len(after) == len(before) and set(sentences) == set(after)
    assert set(after) == set(before)  # same chunks (ids are their place and text)...
    moved = [float(after[cid][2] @ before[cid][2]) for cid in after]
    assert min(moved) < 0.99, "...whose vectors are made the new way"
    again = _ingestor(fresh_settings, then, RecordingEmbedder(embedder))
    assert again.ingest_path(root).embedded == 0, "an unchanged store embeds nothing"


def test_an_interrupted_sentence_mean_ingest_leaves_no_chunk_without_its_sentences(
    tmp_path: Path, fresh_settings: Settings, embedder: Embedder
) -> None:
    root = _folder(tmp_path)
    ingestor = _ingestor(fresh_settings, "sentence-mean", RecordingEmbedder(embedder))

    def crash(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingestor.ingest(read_source(root, {}), on_batch=crash)
    chunks, sentences = _stored(ingestor)
    assert chunks, "the first batch was written before the crash"
    for cid, (text, meta, _) in chunks.items():
        start, offset = int(meta["start"]), int(meta["prefix_len"])
        spans = json.loads(meta["sentences"])
        quoted = [text[offset + a - start : offset + b - start] for a, b in spans]
        assert len(sentences.get(cid, [])) == sum(map(quotable, quoted))
    ingestor.ingest_path(root)
    chunks, sentences = _stored(ingestor)
    assert set(sentences) <= set(chunks) and len(chunks) > 3


@pytest.mark.parametrize("mode", ["embed", "sentence-mean"])
def test_the_documents_bench_runs_and_says_how_chunk_vectors_were_made(
    mode: str, tmp_path: Path, embedder: Embedder
) -> None:
    """The bench's timed ingest (its chunker and embedder wrap the ingestor's) runs in each
    mode, and its report names the mode and what the model embedded."""
    from bench.documents_ingest import run
    from bench.report import documents_section

    recording = RecordingEmbedder(embedder)
    result = run(
        _folder(tmp_path), reingests=1, embedder=recording, workdir=tmp_path, chunk_vectors=mode
    )
    assert result.documents == 1 and result.chunks > 0
    assert result.reingest_embedded == 0
    section = documents_section(result, "now")
    assert f"| {mode}: " in section and f"/ {result.model_texts:,} |" in section
