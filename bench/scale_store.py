"""The stores of the scale bench (issue 19), built once and cached.

* ``bundled``: the bundled corpus ingested by the real pipeline with the default model (real
  chunk and sentence embeddings): the bundled-corpus figures, and the vectors of
* ``scale-N``: a ``chroma run`` folder holding N chunks: the real corpus plus synthetic
  documents of two chunks each, made by :class:`bench.synthetic.SyntheticChunks` (real
  sentences drawn at random, seeded; a chunk's vector is the normalised mean of its sentences'
  real vectors). Embedding a million chunks with the model would take days on 2 cores; this
  takes the time of Chroma's writes. Only the first :data:`SENTENCE_CHUNKS` synthetic chunks
  get sentence records: all of them would be 4 more records per chunk for Chroma to index,
  hours of writes on a loaded 2-core machine (it wrote 40 to 140 records/s). So the dense
  sentence search runs over a smaller collection than a real library of that size would have.

The cache is ``$CITEQA_BENCH_CACHE`` or ``bench/.cache`` (ignored by git); a store's folder name
carries a digest of everything that shapes it, so a change rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings

from bench.measure import load_average
from bench.synthetic import VERSION, CorpusVectors, read_corpus_vectors, write_store
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.resources import BUNDLED_CORPUS
from citeqa.store import Index, connect, open_index
from ingest.run import ingest_paths
from tests.servers import ChromaServer

CACHE = Path(os.environ.get("CITEQA_BENCH_CACHE") or Path(__file__).parent / ".cache")
SENTENCE_CHUNKS = 20_000
COLLECTION = "scale"
COMPLETE = "complete.json"
SEED = 19
WRITE_BATCH = 5000  # records per Chroma add while building
BUILD_SYNC_THRESHOLD = 50_000  # see hnsw_sync
SERVE_SYNC_THRESHOLD = 1000  # Chroma's default, which citeqa's collections keep
PROGRESS = "progress.json"  # blocks written so far, while building
log = logging.getLogger("bench.scale")


def bundled_store(embedder: Embedder, cache: Path = CACHE) -> Settings:
    """The bundled corpus ingested into an embedded store (cached: ~100 s on 2 cores)."""
    digest = hashlib.sha256(BUNDLED_CORPUS.read_bytes() + embedder.name.encode()).hexdigest()
    folder = cache / f"bundled-{digest[:10]}"
    settings = Settings(data_dir=folder, collection="bundled", generator="extractive")
    if not (folder / COMPLETE).exists():
        shutil.rmtree(folder, ignore_errors=True)
        log.info("ingesting the bundled corpus into %s", folder)
        ingest_paths(settings, [BUNDLED_CORPUS], embedder=embedder)
        (folder / COMPLETE).write_text("{}", encoding="utf-8")
    return settings


def corpus_vectors(bundled: Settings, embedder: Embedder) -> CorpusVectors:
    index = open_index(connect(bundled), bundled.collection, embedder, create=False)
    return read_corpus_vectors(index)


@dataclass
class ScaleStore:
    """A cached ``chroma run`` folder of ``chunks`` chunks (collection :data:`COLLECTION`)."""

    path: Path
    chunks: int
    sentence_chunks: int
    build_s: float
    built_now: bool
    build_cpu_s: float | None = None  # the build's CPU time (the writer process)

    def server(self) -> ChromaServer:
        return ChromaServer(self.path / "db")


def scale_marker(n_chunks: int, corpus: CorpusVectors, embedder: Embedder) -> dict[str, Any]:
    """Everything that shapes the store of ``n_chunks`` chunks."""
    return {
        "version": VERSION,
        "n_chunks": n_chunks,
        "sentence_chunks": min(SENTENCE_CHUNKS, n_chunks),
        "seed": SEED,
        "corpus": corpus.key(embedder.name)[:16],
    }


def scale_folder(marker: dict[str, Any], cache: Path) -> Path:
    digest = hashlib.sha1(json.dumps(marker, sort_keys=True).encode()).hexdigest()[:10]
    return cache / f"scale-{marker['n_chunks']}-{digest}"


def ensure_scale_store(
    n_chunks: int, corpus: CorpusVectors, embedder: Embedder, cache: Path = CACHE
) -> ScaleStore:
    """The store of ``n_chunks`` chunks, built unless cached, by ``python -m bench.scale_store
    N`` in a process of its own (its embedded Chroma has let go of the folder when it ends)."""
    marker = scale_marker(n_chunks, corpus, embedder)
    folder = scale_folder(marker, cache)
    built_now = not (folder / COMPLETE).exists()
    if built_now:
        command = [sys.executable, "-m", "bench.scale_store", str(n_chunks)]
        env = {**os.environ, "CITEQA_BENCH_CACHE": str(cache)}
        subprocess.run(command, env=env, check=True)
    saved = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
    return ScaleStore(
        folder,
        n_chunks,
        marker["sentence_chunks"],
        saved["build_s"],
        built_now,
        saved.get("cpu_s"),
    )


def build_scale_store(
    n_chunks: int, corpus: CorpusVectors, embedder: Embedder, cache: Path = CACHE
) -> Path:
    """Write the store of ``n_chunks`` chunks with an embedded Chroma (``chroma run`` serves the
    folder afterwards): a client in this process writes without HTTP and without the server's
    request limits. A build that was stopped continues from its last whole block
    (:data:`PROGRESS`); the build time is the sum over the runs. Returns the folder."""
    marker = scale_marker(n_chunks, corpus, embedder)
    folder = scale_folder(marker, cache)
    progress_path = folder / PROGRESS
    if (folder / COMPLETE).exists():
        return folder
    saved = None
    if progress_path.exists():
        saved = json.loads(progress_path.read_text(encoding="utf-8"))
    if saved is None or saved.get("marker") != marker:
        for stale in cache.glob(f"scale-{n_chunks}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        saved = {"marker": marker, "blocks": 0, "chunks": 0, "build_s": 0.0, "cpu_s": 0.0}
    folder.mkdir(parents=True, exist_ok=True)
    client = chromadb.PersistentClient(
        path=str(folder / "db"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    index = open_index(client, COLLECTION, embedder, create=True)
    hnsw_sync(index, BUILD_SYNC_THRESHOLD)
    batch = min(WRITE_BATCH, client.get_max_batch_size())
    started, before = time.perf_counter(), float(saved["build_s"])
    cpu_started, cpu_before = time.process_time(), float(saved.get("cpu_s", 0.0))
    resumed_at = int(saved["chunks"])
    if saved["blocks"]:
        log.info("scale store: continuing after %d chunks (block %d)", resumed_at, saved["blocks"])
    last = [started]

    def progress(blocks: int, written: int) -> None:
        now = time.perf_counter()
        cpu = time.process_time() - cpu_started  # Chroma's Rust threads included
        saved.update(blocks=blocks, chunks=written, build_s=before + now - started)
        saved.update(cpu_s=cpu_before + cpu)
        progress_path.write_text(json.dumps(saved), encoding="utf-8")
        if now - last[0] > 60 or written == n_chunks:
            last[0] = now
            log.info(
                "scale store: %d/%d chunks written; this run: %.0f chunks/s, %.0f chunks per "
                "CPU second; load %s",
                written,
                n_chunks,
                (written - resumed_at) / (now - started),
                (written - resumed_at) / max(cpu, 1e-9),
                load_average(),
            )

    write_store(
        index,
        batch,
        n_chunks,
        corpus,
        SEED,
        marker["sentence_chunks"],
        progress,
        int(saved["blocks"]),
    )
    hnsw_sync(index, SERVE_SYNC_THRESHOLD)  # served as citeqa creates it
    done = {
        **marker,
        "build_s": saved["build_s"],
        "cpu_s": saved["cpu_s"],
        "write_batch": batch,
        "writer": "embedded",
    }
    (folder / COMPLETE).write_text(json.dumps(done), encoding="utf-8")
    return folder


def hnsw_sync(index: Index, records: int) -> None:
    """Persist the HNSW indexes every ``records`` records written. Each persist writes index
    files that grow with the collection (the vectors alone are 1.5 GB at 1M chunks), so a build
    persists seldom: with 50,000, 30k random 384-d records wrote 25% fewer bytes than with
    Chroma's default of 1,000, a share that grows with the index. Unpersisted records stay in
    Chroma's write-ahead log, so an interrupted build loses nothing."""
    log_collection = [index.log.collection] if index.log is not None else []
    for collection in (index.chunks, index.sentences, *log_collection):
        collection.modify(configuration={"hnsw": {"sync_threshold": records}})


def main() -> None:
    """``python -m bench.scale_store N``: build (or continue building) the store of N chunks."""
    from citeqa.embedding import MiniLMOnnxEmbedder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    embedder = MiniLMOnnxEmbedder()
    corpus = corpus_vectors(bundled_store(embedder), embedder)
    folder = build_scale_store(int(sys.argv[1]), corpus, embedder)
    saved = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
    log.info("%s: %d chunks, built in %.0f s", folder, saved["n_chunks"], saved["build_s"])


if __name__ == "__main__":
    main()
