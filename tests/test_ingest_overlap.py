"""Ingest overlaps embedding with store writes (issue 19): batch N is written into a real Chroma
while batch N+1 is embedded by the scripted OpenAI-compatible server over HTTP, and the store
ends, and fails, exactly as when the two run one after the other."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.ingest_bench import TimingEmbedder
from citeqa.config import Settings
from citeqa.embedding import OpenAIEmbedder
from citeqa.errors import EmbeddingError
from citeqa.store import INGESTED_AT, Index, connect, open_index
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_folder
from tests.fakes.openai_server import Error, FakeOpenAIServer, Reply

EMBED_LATENCY_S = 0.06  # per embeddings request: one request per batch below
WRITE_LATENCY_S = 0.03  # added to each real Chroma upsert
BATCH = 8
SENTENCE = "Finding {n} holds for the {w} model of the survey, as the appendix {n} shows."
WORDS = ["mixed", "linear", "additive", "Bayesian", "hierarchical", "spatial"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(embedding_dim=16) as srv:
        yield srv


class Writes:
    """What the store was asked to write, in order, how long it took, and how many writes
    ran at once at most."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[str]]] = []
        self.seconds = 0.0
        self.running = self.most_running = 0
        self.lock = threading.Lock()


class SlowCollection:
    """A real Chroma collection whose upserts take :data:`WRITE_LATENCY_S` longer, recorded
    in ``writes``; the ``fail_at``-th upsert (1-based, 0: none) fails as a vanished Chroma."""

    def __init__(self, real: Any, writes: Writes, fail_at: int = 0) -> None:
        self.real, self.writes, self.fail_at, self.upserts = real, writes, fail_at, 0

    def upsert(self, **kwargs: Any) -> None:
        started = time.perf_counter()
        with self.writes.lock:
            self.writes.running += 1
            self.writes.most_running = max(self.writes.most_running, self.writes.running)
        try:
            self.upserts += 1
            time.sleep(WRITE_LATENCY_S)
            if self.upserts == self.fail_at:
                raise ConnectionError("Chroma went away mid-ingest")
            self.real.upsert(**kwargs)
            self.writes.log.append((self.real.name, list(kwargs["ids"])))
        finally:
            with self.writes.lock:
                self.writes.running -= 1
            self.writes.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _corpus(root: Path, docs: int = 4, sentences: int = 20) -> Path:
    root.mkdir(parents=True)
    for d in range(docs):
        body = " ".join(
            SENTENCE.format(n=d * 100 + i, w=WORDS[(d + i) % len(WORDS)]) for i in range(sentences)
        )
        (root / f"survey{d}.md").write_text(f"# Survey {d}\n\n{body}\n")
    return root


def _ingestor(
    data_dir: Path,
    server: FakeOpenAIServer,
    overlap: bool,
    fail_write_at: int = 0,
) -> tuple[Ingestor, TimingEmbedder, Writes]:
    settings = Settings(data_dir=data_dir, generator="extractive")
    embedder = TimingEmbedder(
        OpenAIEmbedder("fake-embedder", server.base_url, None, batch_size=BATCH, concurrency=1)
    )
    index = open_index(connect(settings), settings.collection, embedder, create=True)
    writes = Writes()
    slow = Index(
        chunks=SlowCollection(index.chunks, writes, fail_write_at),  # type: ignore[arg-type]
        sentences=SlowCollection(index.sentences, writes),  # type: ignore[arg-type]
    )
    chunker = SentenceChunker(max_tokens=60, count_tokens=embedder.count_tokens)
    ingestor = Ingestor(slow, embedder, chunker, max_batch=BATCH, overlap_writes=overlap)
    return ingestor, embedder, writes


def _records(index: Index) -> dict[str, dict[str, Any]]:
    """Every record of both collections: text, metadata (without the ingest time), vector."""
    out = {}
    for collection in (index.chunks, index.sentences):
        got = collection.get(include=["documents", "metadatas", "embeddings"])
        vectors = got["embeddings"] if got["embeddings"] is not None else []
        texts, metas = got["documents"] or [], got["metadatas"] or []
        for rid, text, meta, vector in zip(got["ids"], texts, metas, vectors, strict=True):
            meta = {k: v for k, v in (meta or {}).items() if k != INGESTED_AT}
            if "_node_content" in meta:  # llama-index's copy of the node, metadata included
                node = json.loads(str(meta["_node_content"]))
                del node["metadata"][INGESTED_AT]
                meta["_node_content"] = node
            out[f"{collection.name}/{rid}"] = {"text": text, "meta": meta, "vector": list(vector)}
    return out


def test_writes_run_while_the_next_batch_embeds_with_the_same_result(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.embedding_latency = EMBED_LATENCY_S
    folder = _corpus(tmp_path / "docs")
    sequential, seq_embedder, seq_writes = _ingestor(tmp_path / "a", server, overlap=False)
    overlapped, embedder, writes = _ingestor(tmp_path / "b", server, overlap=True)

    reference = sequential.ingest(read_folder(folder))
    summary = overlapped.ingest(read_folder(folder))

    assert len(writes.log) >= 10  # enough batches for the overlap to show
    busy = embedder.embed_s + writes.seconds  # embedding and writing, one after the other
    sequential_busy = seq_embedder.embed_s + seq_writes.seconds
    assert reference.seconds / sequential_busy > 0.95  # in turn, the wall is their sum
    assert summary.seconds / busy < 0.8, (summary.seconds, embedder.embed_s, writes.seconds)
    assert writes.most_running == 1  # one writer: batches land one at a time
    assert writes.log == seq_writes.log  # same batches, in the same order
    assert (summary.embedded, summary.chunks_written) == (
        reference.embedded,
        reference.chunks_written,
    )
    assert _records(overlapped.index) == _records(sequential.index)


@pytest.mark.parametrize("fails", ["write", "embedding", "progress"])
def test_a_failure_stops_writing_where_writing_in_turn_would(
    tmp_path: Path, server: FakeOpenAIServer, fails: str
) -> None:
    """Whatever fails first (the 3rd chunk upsert, the 6th embedding request, the progress
    callback after the 4th batch), the same batches are written, and the same error raised,
    overlapped or not."""
    folder = _corpus(tmp_path / "docs")
    outcomes = []
    for overlap in (False, True):
        ingestor, _, writes = _ingestor(
            tmp_path / str(overlap), server, overlap, fail_write_at=3 if fails == "write" else 0
        )
        if fails == "embedding":
            server.enqueue_embeddings(*[Reply("")] * 5, Error(400, "no such model"))
        counted: list[int] = []

        def progress(count: int, counted: list[int] = counted) -> None:
            counted.append(count)
            if fails == "progress" and len(counted) == 4:
                raise KeyboardInterrupt

        expected = {
            "write": ConnectionError,
            "embedding": EmbeddingError,
            "progress": KeyboardInterrupt,
        }
        with pytest.raises(expected[fails]):
            ingestor.ingest(read_folder(folder), on_batch=progress)
        outcomes.append((writes.log, counted, _records(ingestor.index).keys()))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0]  # something was written before the failure
