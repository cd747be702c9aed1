"""Entry points that wire settings, store, embedder and chunker into an ingest run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from chromadb.api import ClientAPI

from citeqa.config import Settings
from citeqa.embedding import Embedder, MiniLMOnnxEmbedder, build_embedder
from citeqa.store import Index, connect, open_index
from ingest.chunker import SentenceChunker
from ingest.formats import Limits
from ingest.pipeline import Ingestor, IngestSummary
from ingest.progress import Reporter


class _BuiltOnFirstUse:
    """The configured local embedder, built when first asked to embed or count tokens: an
    unchanged re-ingest does neither, so it does not load the model (the figures of
    BENCHMARKS.md). Its name and dimension, which the store checks, need no model."""

    name = MiniLMOnnxEmbedder.name
    dim = MiniLMOnnxEmbedder.dim

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: Embedder | None = None

    def _model(self) -> Embedder:
        if self._inner is None:
            self._inner = build_embedder(self._settings)
        return self._inner

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._model().embed(texts)

    def count_tokens(self, text: str) -> int:
        return self._model().count_tokens(text)


def build_ingestor(
    settings: Settings,
    embedder: Embedder | None = None,
    index: Index | None = None,
    client: ClientAPI | None = None,
) -> Ingestor:
    """An ingestor for ``settings``; without ``embedder``, the local model is loaded only
    once there is something to embed."""
    if embedder is None:
        local = settings.embed_backend == "minilm-onnx"
        embedder = _BuiltOnFirstUse(settings) if local else build_embedder(settings)
    client = client or connect(settings)
    index = index or open_index(client, settings.collection, embedder, create=True)
    chunker = SentenceChunker(
        max_tokens=settings.chunk_max_tokens,
        count_tokens=embedder.count_tokens,
        vectors="" if settings.chunk_vectors == "embed" else settings.chunk_vectors,
    )
    return Ingestor(index, embedder, chunker, client.get_max_batch_size())


def ingest_paths(
    settings: Settings,
    paths: Sequence[Path],
    progress: Reporter | None = None,
    embedder: Embedder | None = None,
    calibrate: bool = False,
) -> list[IngestSummary]:
    """Ingest each path (a folder, a paper listing or a file) as its own source; then, when
    ``calibrate`` and the collection changed materially, refit its answerability model
    (``citeqa ingest --calibrate``)."""
    ingestor = build_ingestor(settings, embedder)
    limits = Limits(pdf_seconds=settings.pdf_time_limit_s)
    summaries = [ingestor.ingest_path(path, progress, limits) for path in paths]
    if calibrate:
        from evals.calibrate import after_ingest  # numpy fitting: only when it may be needed

        after_ingest(settings, ingestor.index, ingestor.embedder, summaries)
    return summaries


def ensure_ingested(
    settings: Settings, progress: Reporter | None = None, embedder: Embedder | None = None
) -> IngestSummary | None:
    """Ingest the configured corpus when the store is empty; None when it already has chunks."""
    ingestor = build_ingestor(settings, embedder)
    if ingestor.index.chunks.count() > 0:
        return None
    limits = Limits(pdf_seconds=settings.pdf_time_limit_s)
    return ingestor.ingest_path(settings.corpus_path, progress, limits)
