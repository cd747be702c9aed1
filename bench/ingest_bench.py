"""Ingest from empty vs the raw embedding model on exactly the same texts, and re-ingest.

The pipeline embeds every chunk and every sentence of a chunk. The texts are computed up
front with the pipeline's own chunker, embedded "raw" (one ``embedder.embed`` call over all of
them, the embedder's own length-sorted batching) and checked afterwards against what the
ingest wrote. The raw model embeds every :data:`RAW_SHARE`-th text by length (the same length
distribution, 1/RAW_SHARE of the time); its rate is compared with the ingest's. To share the
machine's noise fairly, each round embeds half of that sample raw before the ingest and the
other half after it (A-B-A), and the ratio is computed per round.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.measure import Samples
from citeqa.config import Settings
from citeqa.embedding import Embedder
from ingest.chunker import SentenceChunker
from ingest.readers import ReadResult, read_source
from ingest.run import build_ingestor


@dataclass
class PipelineTexts:
    chunks: list[str]
    sentences: list[str]

    @property
    def all(self) -> list[str]:
        return self.chunks + self.sentences


def pipeline_texts(chunker: SentenceChunker, read: ReadResult) -> PipelineTexts:
    """The chunk texts and sentence texts the ingest pipeline embeds for ``read``."""
    chunks: list[str] = []
    sentences: list[str] = []
    for document in read.documents:
        text = document.get_content()
        for node in chunker.chunk_document(document):
            chunks.append(node.get_content())
            spans = json.loads(str(node.metadata["sentences"]))
            sentences.extend(text[start:end] for start, end in spans)
    return PipelineTexts(chunks, sentences)


class TimingEmbedder:
    """Wraps an embedder and adds up the time spent in ``embed`` and ``count_tokens``."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.embed_s = 0.0
        self.count_s = 0.0
        self.texts = 0  # texts embedded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.embed_s += time.perf_counter() - started

    def count_tokens(self, text: str) -> int:
        started = time.perf_counter()
        try:
            return self.inner.count_tokens(text)
        finally:
            self.count_s += time.perf_counter() - started


@dataclass
class IngestResult:
    documents: int = 0
    chunks: int = 0
    texts: int = 0
    ingest_s: Samples = field(default_factory=lambda: Samples("s"))
    ingest_rate: Samples = field(default_factory=lambda: Samples("texts/s"))
    chunk_rate: Samples = field(default_factory=lambda: Samples("chunks/s"))
    raw_s: Samples = field(default_factory=lambda: Samples("s"))
    raw_rate: Samples = field(default_factory=lambda: Samples("texts/s"))
    ratio: Samples = field(default_factory=lambda: Samples("%"))
    reingest_s: Samples = field(default_factory=lambda: Samples("s"))
    reingest_embedded: int = 0
    embed_in_pipeline_s: Samples = field(default_factory=lambda: Samples("s"))
    count_tokens_s: Samples = field(default_factory=lambda: Samples("s"))
    reingest_count_tokens_s: Samples = field(default_factory=lambda: Samples("s"))
    store: Settings | None = None  # the last round's store, kept for the other phases


Reader = Callable[[], ReadResult]
RAW_SHARE = 2  # the raw model embeds every 2nd text by length: the rate, in half the time


def corpus_reader(corpus: Path, documents: int | None) -> Reader:
    """Reads the corpus as `citeqa ingest` does; the first ``documents`` only when given."""

    def read() -> ReadResult:
        result = read_source(corpus)
        if documents is not None:
            result.documents = result.documents[:documents]
        return result

    return read


def run_ingest(
    embedder: Embedder, reader: Reader, rounds: int, reingests: int, workdir: Path
) -> IngestResult:
    """``rounds`` ingests from empty (A-B-A with the raw model), then ``reingests`` reruns."""
    result = IngestResult()
    for round_no in range(rounds):
        if result.store is not None:
            shutil.rmtree(result.store.data_dir, ignore_errors=True)
        result.store = _round(embedder, reader, result, workdir)
        if round_no == rounds - 1:
            _reingest(embedder, reader, result, reingests)
    return result


def _round(embedder: Embedder, reader: Reader, result: IngestResult, workdir: Path) -> Settings:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ingest-", dir=workdir)))
    timing = TimingEmbedder(embedder)
    ingestor = build_ingestor(settings, timing)
    texts = pipeline_texts(ingestor.chunker, reader())
    timing.embed_s = timing.count_s = 0.0
    sample = sorted(texts.all, key=len)[::RAW_SHARE]
    halves = (sample[0::2], sample[1::2])
    raw_first = _embed_seconds(embedder, halves[0])
    started = time.perf_counter()
    read = reader()
    summary = ingestor.ingest(read)
    ingest_s = time.perf_counter() - started
    result.documents = len(read.documents)
    raw_rate = len(sample) / (raw_first + _embed_seconds(embedder, halves[1]))
    _check_same_texts(ingestor, texts, summary.embedded)
    result.chunks, result.texts = len(texts.chunks), len(texts.all)
    result.ingest_s.add(ingest_s)
    result.ingest_rate.add(len(texts.all) / ingest_s)
    result.chunk_rate.add(len(texts.chunks) / ingest_s)
    result.raw_s.add(len(texts.all) / raw_rate)  # the sample's time, scaled to every text
    result.raw_rate.add(raw_rate)
    result.ratio.add(100 * len(texts.all) / ingest_s / raw_rate)
    result.embed_in_pipeline_s.add(timing.embed_s)
    result.count_tokens_s.add(timing.count_s)
    return settings


def _embed_seconds(embedder: Embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed(texts)
    return time.perf_counter() - started


def _check_same_texts(ingestor: object, texts: PipelineTexts, embedded: int) -> None:
    """The raw run embedded exactly what the ingest wrote (same multiset of texts)."""
    index = ingestor.index  # type: ignore[attr-defined]
    stored_chunks = index.chunks.get(include=["documents"])["documents"] or []
    stored_sentences = index.sentences.get(include=["documents"])["documents"] or []
    if Counter(stored_chunks) != Counter(texts.chunks) or Counter(stored_sentences) != Counter(
        texts.sentences
    ):
        raise RuntimeError("the benchmark's texts differ from what the ingest pipeline embedded")
    if embedded != len(texts.all):
        raise RuntimeError(f"ingest embedded {embedded} texts, expected {len(texts.all)}")


def _reingest(embedder: Embedder, reader: Reader, result: IngestResult, runs: int) -> None:
    """Reruns on the unchanged corpus: read, plan, compare with the store; nothing to embed."""
    assert result.store is not None
    timing = TimingEmbedder(embedder)
    ingestor = build_ingestor(result.store, timing)
    for _ in range(runs):
        timing.count_s = 0.0
        started = time.perf_counter()
        summary = ingestor.ingest(reader())
        result.reingest_s.add(time.perf_counter() - started)
        result.reingest_count_tokens_s.add(timing.count_s)
        result.reingest_embedded = max(result.reingest_embedded, summary.embedded)
