"""Entry points that wire settings, store, embedder and chunker into an ingest run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from chromadb.api import ClientAPI

from citeqa.config import Settings
from citeqa.embedding import Embedder, MiniLMOnnxEmbedder, build_embedder
from citeqa.store import Index, connect, open_index
from ingest.chunker import SentenceChunker
from ingest.formats import Limits
from ingest.pipeline import Ingestor, IngestSummary
from ingest.progress import Reporter

if TYPE_CHECKING:
    from service.answering.answerability import AnswerabilityModel


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


def default_embedder(settings: Settings) -> Embedder:
    """The configured embedder; the local one is loaded only once asked to embed."""
    local = settings.embed_backend == "minilm-onnx"
    return _BuiltOnFirstUse(settings) if local else build_embedder(settings)


def build_ingestor(
    settings: Settings,
    embedder: Embedder | None = None,
    index: Index | None = None,
    client: ClientAPI | None = None,
) -> Ingestor:
    """An ingestor for ``settings``; without ``embedder``, the local model is loaded only
    once there is something to embed."""
    embedder = embedder or default_embedder(settings)
    client = client or connect(settings)
    index = index or open_index(client, settings.collection, embedder, create=True)
    chunker = SentenceChunker(
        max_tokens=settings.chunk_max_tokens,
        count_tokens=embedder.count_tokens,
        vectors="" if settings.chunk_vectors == "embed" else settings.chunk_vectors,
    )
    return Ingestor(
        index,
        embedder,
        chunker,
        client.get_max_batch_size(),
        max_records_per_s=settings.ingest_max_records_per_s,
    )


def ingest_paths(
    settings: Settings,
    paths: Sequence[Path],
    progress: Reporter | None = None,
    embedder: Embedder | None = None,
    calibrate: bool = False,
) -> list[IngestSummary]:
    """Ingest each path (a folder, a paper listing or a file) as its own source; then, when
    ``calibrate``, :func:`refit` the collection's answerability model."""
    ingestor = build_ingestor(settings, embedder)
    limits = Limits(pdf_seconds=settings.pdf_time_limit_s)
    summaries = [ingestor.ingest_path(path, progress, limits) for path in paths]
    if calibrate:
        refit(settings, changed(summaries), ingestor.embedder, ingestor.index)
    return summaries


def changed(summaries: Sequence[IngestSummary]) -> int:
    """The documents some ingests added, updated or deleted."""
    return sum(s.changed for s in summaries)


def refit(
    settings: Settings,
    changed: int,
    embedder: Embedder | None = None,
    index: Index | None = None,
) -> AnswerabilityModel | None:
    """After an ingest or a delete that added, updated or deleted ``changed`` documents,
    when that changed the collection materially, fit its answerability model on its own
    documents and store it with it (`citeqa ingest` does, as a stage of its own after the
    ingest's summary; so do uploads and deletes through the API); None when nothing was
    fit."""
    from evals.calibrate import after_ingest  # numpy fitting: only when it may be needed

    embedder = embedder or default_embedder(settings)
    index = index or open_index(connect(settings), settings.collection, embedder, create=True)
    return after_ingest(settings, index, embedder, changed)


def refit_report(
    settings: Settings,
    changed: int,
    embedder: Embedder | None = None,
    index: Index | None = None,
) -> str | None:
    """:func:`refit`, and the line that reports it (what the fit measured and its time), as
    `citeqa ingest` and `citeqa eval --corpus` print it; None when nothing was fit."""
    from evals.calibrate import describe

    started = time.monotonic()
    model = refit(settings, changed, embedder, index)
    return None if model is None else f"{describe(model)} ({time.monotonic() - started:.1f} s)"


def ensure_ingested(
    settings: Settings, progress: Reporter | None = None, embedder: Embedder | None = None
) -> IngestSummary | None:
    """Ingest the configured corpus when the store is empty; None when it already has chunks."""
    ingestor = build_ingestor(settings, embedder)
    if ingestor.index.chunks.count() > 0:
        return None
    limits = Limits(pdf_seconds=settings.pdf_time_limit_s)
    return ingestor.ingest_path(settings.corpus_path, progress, limits)
