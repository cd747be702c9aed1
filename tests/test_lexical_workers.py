"""A cold build of the tantivy index whose chunks' fields are made by worker processes builds
the index a build in one process does (issue 19: the per-chunk work spread over the cores),
replaced and doubtful documents included, and goes on without them when they fail; how many
workers a build takes."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

from citeqa.resources import BUNDLED_CORPUS
from citeqa.store import Index, open_index
from service.answering import lexical, lexical_workers
from service.answering.lexical import TantivyIndex
from service.answering.lexical_workers import MAX_WORKERS, PARALLEL_FROM, worker_count
from tests.paths import REPO_ROOT


def cold_build_script() -> ModuleType:
    """scripts/lexical_cold_build.py: its digest of an index's content is the one the
    old-vs-new comparisons at 100k and 1M chunks check."""
    path = REPO_ROOT / "scripts" / "lexical_cold_build.py"
    spec = importlib.util.spec_from_file_location("lexical_cold_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chunks_of_the_bundled_corpus() -> list[tuple[str, str, dict[str, Any]]]:
    """Each line of the bundled corpus a document of two or three chunks (its words cut in
    parts), one newer version of the first document written after all of them, and a chunk
    written before versions had a chunk count (read again by the build, by document)."""
    lines = [line for line in BUNDLED_CORPUS.read_text(encoding="utf-8").splitlines() if line]
    rows = []
    for n, line in enumerate(lines):
        words = line.split()
        parts = 2 + n % 2
        size = -(-len(words) // parts)
        texts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        for k, text in enumerate(texts):
            meta = {"doc_id": f"d{n}", "doc_hash": "v1", "doc_chunks": len(texts)}
            rows.append((f"d{n}-v1-{k}", text, {**meta, "ingested_at": 1.0}))
    newer = {"doc_id": "d0", "doc_hash": "v2", "doc_chunks": 1, "ingested_at": 2.0}
    rows.append(("d0-v2-0", "A newer version (ANV) of the first paper.", newer))
    rows.append(("old-0", "Written before chunk counts.", {"doc_id": "old", "ingested_at": 0.5}))
    return rows


@pytest.fixture(scope="module")
def index() -> Index:
    script = cold_build_script()
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    index = open_index(client, f"lw{uuid.uuid4().hex[:12]}", script.ProbeEmbedder(), create=True)
    assert index.log is not None
    rows = chunks_of_the_bundled_corpus()
    vectors = np.random.default_rng(19).normal(size=(len(rows), 2)).astype(np.float32)
    index.chunks.add(
        ids=[r[0] for r in rows],
        documents=[r[1] for r in rows],
        metadatas=[r[2] for r in rows],
        embeddings=vectors,
    )
    index.log.append({(r[2]["doc_id"], r[2].get("doc_hash", ""), 1) for r in rows})
    return index


def digest_of_a_build(index: Index, root: Path, workers: int) -> tuple[str, int, int]:
    follower = TantivyIndex(index, root, poll_s=0, build_workers=workers)
    try:
        view = follower.view()
        return cold_build_script().digest(follower), view.searcher.num_docs, view.stats.documents
    finally:
        follower.close()


def test_worker_processes_build_the_index_one_process_builds(
    tmp_path: Path, index: Index, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lexical, "BUILD_BATCH", 40)  # many batches, several in flight
    alone = digest_of_a_build(index, tmp_path / "alone", workers=0)
    documents = len([line for line in BUNDLED_CORPUS.read_text().splitlines() if line])
    assert alone[1:] == (index.chunks.count() - 2, documents + 1)  # d0: v1 (2 chunks) replaced
    assert digest_of_a_build(index, tmp_path / "two", workers=2) == alone
    assert digest_of_a_build(index, tmp_path / "one", workers=1) == alone
    assert "worker processes failed" not in caplog.text  # they did make the fields


def crash(task: object) -> None:
    os._exit(3)  # a worker killed, or one that cannot start (a main module without its guard)


def test_a_build_whose_workers_fail_goes_on_in_its_own_process(
    tmp_path: Path, index: Index, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lexical, "BUILD_BATCH", 40)
    alone = digest_of_a_build(index, tmp_path / "alone", workers=0)
    monkeypatch.setattr(lexical_workers, "fielded", crash)
    assert digest_of_a_build(index, tmp_path / "failed", workers=2) == alone
    assert "worker processes failed" in caplog.text


def test_a_build_takes_one_worker_per_cpu_once_it_is_large() -> None:
    assert worker_count(None, PARALLEL_FROM - 1) == 0
    assert worker_count(None, PARALLEL_FROM) == (os.cpu_count() or 1)
    assert worker_count(3, 10) == 3
    assert worker_count(0, 10**6) == 0
    assert worker_count(10**3, 10**6) == MAX_WORKERS
