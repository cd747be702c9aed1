"""Ingest a folder of documents (PDF, HTML...) from empty: wall time, pages/s, where the time
goes (extraction, chunking, embedding, store writes); then unchanged re-ingests of it.

    python -m bench.documents_ingest [FOLDER]   # default ../shared/corpora/r-vignettes
    python -m bench.documents_ingest --write    # ... and its section of BENCHMARKS.md

`python -m bench` runs it on ../shared/corpora/r-vignettes, or on one PDF of
tests/data/r-vignettes when ../shared is absent (a clone alone) or with ``--quick``.

Store writes are what the ingest spends outside extraction, chunking and embedding: reading
what the store holds, upserts into Chroma (its HNSW index and SQLite) that embedding does not
hide (the upserts of one batch run while the next one embeds, ingest/overlap.py; their own
time is shown apart) and deletes. Each
re-ingest is what `citeqa ingest FOLDER` does in process: connect to the store, build the
embedder, read the stored records, hash the files, plan; it counts the files extracted and the
texts embedded (both 0 when nothing changed). The load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ingest.readers
from bench.ingest_bench import TimingEmbedder
from bench.measure import Samples
from citeqa.config import Settings
from citeqa.embedding import Embedder, build_embedder
from citeqa.layout import Layout
from citeqa.store import Index
from ingest.chunker import SentenceChunker
from ingest.run import build_ingestor

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FOLDER = REPO_ROOT.parent / "shared" / "corpora" / "r-vignettes"
BUNDLED_FOLDER = REPO_ROOT / "tests" / "data" / "r-vignettes"


def default_folder() -> Path:
    """r-vignettes from ../shared when present, else the bundled files."""
    return SHARED_FOLDER if SHARED_FOLDER.is_dir() else BUNDLED_FOLDER


class TimingChunker:
    """The ingestor's chunker, timed."""

    def __init__(self, inner: SentenceChunker) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        """Everything else the ingestor reads of its chunker (``max_tokens``, ``chunking``,
        ``vectors``, ...) is the inner chunker's: a new field cannot be forgotten here."""
        return getattr(self.inner, name)

    def chunk_document(self, document: Any, layout: Layout | None = None) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.chunk_document(document, layout)
        finally:
            self.seconds += time.perf_counter() - started


class TimedUpserts:
    """A collection whose upserts are timed (they run in the ingest's writer thread)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def upsert(self, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            self.inner.upsert(**kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedExtraction:
    """Times (and counts) the readers' extraction of each file while in use."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.files = 0
        self._original = ingest.readers._extract

    def __enter__(self) -> TimedExtraction:
        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return self._original(*args)
            finally:
                self.seconds += time.perf_counter() - started
                self.files += 1

        ingest.readers._extract = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        ingest.readers._extract = self._original  # type: ignore[assignment]


@dataclass
class DocumentsResult:
    folder: str
    documents: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pages: int = 0
    chunks: int = 0
    texts: int = 0  # records written with a vector: chunks and sentences
    chunk_vectors: str = "embed"  # CITEQA_CHUNK_VECTORS of the run (ingest.vectors)
    model_texts: int = 0  # texts the model embedded (fewer than ``texts`` in sentence-mean)
    wall_s: float = 0.0
    extraction_s: float = 0.0
    hashing_s: float = 0.0  # reading and hashing the files' bytes, outside extraction
    chunking_s: float = 0.0
    embedding_s: float = 0.0
    upserts_s: float = 0.0  # inside Chroma upserts (the writer thread, beside embedding)
    store_writes_s: float = 0.0  # store work not hidden behind embedding
    cpu_s: float = 0.0  # CPU time of the process (all threads) during that ingest
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    reingest_s: Samples = field(default_factory=lambda: Samples("s"))
    reingest_open_s: Samples = field(default_factory=lambda: Samples("s"))
    reingest_extracted: int = -1  # files extracted by the re-ingests, all together
    reingest_embedded: int = -1
    reingest_load: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.wall_s if self.wall_s else float("nan")

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.embedding_s if self.embedding_s else float("nan")

    def share(self, seconds: float) -> float:
        return 100 * seconds / self.wall_s if self.wall_s else float("nan")


def run(
    folder: Path,
    reingests: int = 3,
    embedder: Embedder | None = None,
    workdir: Path | None = None,
    chunk_vectors: str | None = None,
) -> DocumentsResult:
    """Ingest ``folder`` into an empty store, then re-ingest it ``reingests`` times;
    ``chunk_vectors``: that setting (None: CITEQA_CHUNK_VECTORS or its default)."""
    folder = folder.resolve()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        settings = Settings(data_dir=Path(tmp), generator="extractive")
        if chunk_vectors is not None:
            settings = settings.model_copy(update={"chunk_vectors": chunk_vectors})
        result = DocumentsResult(
            folder=str(folder), chunk_vectors=settings.chunk_vectors, load_start=os.getloadavg()
        )
        _from_empty(result, settings, folder, embedder)
        result.load_end = os.getloadavg()
        _reingests(result, settings, folder, reingests, embedder)
        return result


def _from_empty(
    result: DocumentsResult, settings: Settings, folder: Path, embedder: Embedder | None
) -> None:
    timing = TimingEmbedder(embedder or build_embedder(settings))
    ingestor = build_ingestor(settings, timing)  # type: ignore[arg-type]
    chunker = TimingChunker(ingestor.chunker)
    ingestor.chunker = chunker  # type: ignore[assignment]
    upserts = [TimedUpserts(ingestor.index.chunks), TimedUpserts(ingestor.index.sentences)]
    ingestor.index = Index(*upserts)  # type: ignore[arg-type]
    pages: list[int] = []
    original_read = ingest.readers.read_file

    def counting_pages(*args: Any, **kwargs: Any) -> Any:
        read = original_read(*args, **kwargs)
        if not isinstance(read, str):
            pages.extend(layout.pages[-1][1] for _, layout in read if layout and layout.pages)
        return read

    ingest.readers.read_file = counting_pages  # type: ignore[assignment]
    try:
        with TimedExtraction() as extraction:
            started, cpu = time.perf_counter(), time.process_time()
            read = ingest.readers.read_source(folder)
            read_s = time.perf_counter() - started
            summary = ingestor.ingest(read)
            result.wall_s = time.perf_counter() - started
            result.cpu_s = time.process_time() - cpu
    finally:
        ingest.readers.read_file = original_read  # type: ignore[assignment]
    result.documents = summary.documents
    result.skipped = summary.skipped
    result.pages = sum(pages)
    result.chunks = summary.chunks_written
    result.texts = summary.embedded
    result.model_texts = timing.texts
    result.extraction_s = extraction.seconds
    result.hashing_s = read_s - extraction.seconds
    result.chunking_s = chunker.seconds
    result.embedding_s = timing.embed_s
    result.upserts_s = sum(u.seconds for u in upserts)
    result.store_writes_s = (
        result.wall_s - read_s - result.chunking_s - result.embedding_s
    )  # token counting happens inside chunking


def _reingests(
    result: DocumentsResult,
    settings: Settings,
    folder: Path,
    rounds: int,
    embedder: Embedder | None,
) -> None:
    extracted = embedded = 0
    for _ in range(rounds):
        with TimedExtraction() as extraction:
            started = time.perf_counter()
            ingestor = build_ingestor(settings, embedder)
            opened = time.perf_counter()
            summary = ingestor.ingest_path(folder)
            done = time.perf_counter()
        result.reingest_s.add(done - started)
        result.reingest_open_s.add(opened - started)
        extracted += extraction.files
        embedded += summary.embedded
    result.reingest_extracted, result.reingest_embedded = extracted, embedded
    result.reingest_load = os.getloadavg()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.documents_ingest",
        description="Ingest a documents folder from empty, then re-ingest it unchanged.",
    )
    parser.add_argument("folder", nargs="?", type=Path, help="default: ../shared r-vignettes")
    parser.add_argument("--write", action="store_true", help="rewrite its BENCHMARKS.md section")
    parser.add_argument(
        "--chunk-vectors",
        choices=["embed", "sentence-mean"],
        help="how chunk vectors are made (default: CITEQA_CHUNK_VECTORS or its default)",
    )
    args = parser.parse_args(argv)
    folder = args.folder or default_folder()
    if not folder.is_dir():
        parser.error(f"{folder}: no such folder")
    result = run(folder, reingests=5, chunk_vectors=args.chunk_vectors)
    figures = asdict(result)
    figures["reingest_s"] = result.reingest_s.text(2)
    figures["reingest_open_s"] = result.reingest_open_s.text(2)
    figures["pages_per_s"] = round(result.pages_per_s, 2)
    figures["texts_per_s"] = round(result.texts_per_s, 1)
    print(json.dumps(figures, indent=2, default=str), flush=True)
    if args.write:
        write_section(result, REPO_ROOT / "BENCHMARKS.md")


def write_section(result: DocumentsResult, path: Path) -> None:
    """Replace (or add, before the Retrieval section) this bench's section of ``path``."""
    from bench.report import SECTIONS, documents_section  # report imports this module

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = documents_section(result, f"run alone on {stamp}")
    text = path.read_text(encoding="utf-8")
    title = SECTIONS[9]
    if title in text:
        head, _, rest = text.partition(title)
        tail = rest[rest.index("\n## ") :] if "\n## " in rest else "\n"
        text = f"{head}{section}\n{tail}"
    else:
        head, _, rest = text.partition(SECTIONS[3])
        text = f"{head}{section}\n\n{SECTIONS[3]}{rest}"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
