"""Entry points that wire settings, store, embedder and chunker into an ingest run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chromadb.api import ClientAPI

from citeqa.config import Settings
from citeqa.embedding import Embedder, build_embedder
from citeqa.store import Index, connect, open_index
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor, IngestSummary
from ingest.progress import Reporter
from ingest.readers import read_source


def build_ingestor(
    settings: Settings,
    embedder: Embedder | None = None,
    index: Index | None = None,
    client: ClientAPI | None = None,
) -> Ingestor:
    embedder = embedder or build_embedder(settings)
    client = client or connect(settings)
    index = index or open_index(client, settings.collection, embedder, create=True)
    chunker = SentenceChunker(
        max_tokens=settings.chunk_max_tokens, count_tokens=embedder.count_tokens
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
    summaries = [ingestor.ingest(read_source(path), progress=progress) for path in paths]
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
    return ingestor.ingest(read_source(settings.corpus_path), progress=progress)
