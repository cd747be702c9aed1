"""Ingest a folder of documents from empty, once: wall time, pages/s, and where the time goes
(extraction, chunking, embedding, store writes), then an unchanged re-ingest.

    python -m bench.documents_ingest [FOLDER]   # default ../shared/corpora/r-vignettes

Store writes are what the ingest spends outside chunking and embedding: reading what the
store holds, upserts and deletes. The machine's load average is printed beside the figures.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest_bench import TimingEmbedder
from citeqa.config import Settings
from citeqa.embedding import build_embedder
from citeqa.layout import Layout
from ingest.chunker import SentenceChunker
from ingest.readers import read_source
from ingest.run import build_ingestor

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "r-vignettes"


class TimingChunker:
    """The ingestor's chunker, timed."""

    def __init__(self, inner: SentenceChunker) -> None:
        self.inner = inner
        self.seconds = 0.0

    def chunk_document(self, document: Any, layout: Layout | None = None) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.chunk_document(document, layout)
        finally:
            self.seconds += time.perf_counter() - started


def run(folder: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), generator="extractive")
        embedder = TimingEmbedder(build_embedder(settings))
        ingestor = build_ingestor(settings, embedder)  # type: ignore[arg-type]
        chunker = TimingChunker(ingestor.chunker)
        ingestor.chunker = chunker  # type: ignore[assignment]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        read = read_source(folder)
        extraction = time.perf_counter() - started
        summary = ingestor.ingest(read)
        wall = time.perf_counter() - started
        count = embedder.count_s  # token counting happens inside chunking
        pages = sum(layout.pages[-1][1] for layout in read.layouts.values() if layout.pages)
        again = time.perf_counter()
        second = ingestor.ingest(read_source(folder))
        reingest = time.perf_counter() - again
        return {
            "documents": summary.documents,
            "skipped": summary.skipped,
            "pages": pages,
            "chunks": summary.chunks_written,
            "texts_embedded": summary.embedded,
            "wall_s": round(wall, 1),
            "pages_per_s": round(pages / wall, 2),
            "extraction_s": round(extraction, 1),
            "chunking_s": round(chunker.seconds, 1),
            "token_counting_in_chunking_s": round(count, 1),
            "embedding_s": round(embedder.embed_s, 1),
            "store_writes_s": round(wall - extraction - chunker.seconds - embedder.embed_s, 1),
            "reingest_unchanged_s": round(reingest, 1),
            "reingest_embedded": second.embedded,
            "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else DEFAULT_FOLDER
    print(json.dumps(run(folder.resolve()), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
