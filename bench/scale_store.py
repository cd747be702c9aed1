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
import time
from dataclasses import dataclass
from pathlib import Path

import chromadb
from chromadb.config import Settings as ChromaSettings

from bench.synthetic import VERSION, CorpusVectors, read_corpus_vectors, write_store
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.resources import BUNDLED_CORPUS
from citeqa.store import connect, open_index
from ingest.run import ingest_paths
from tests.servers import ChromaServer

CACHE = Path(os.environ.get("CITEQA_BENCH_CACHE") or Path(__file__).parent / ".cache")
SENTENCE_CHUNKS = 20_000
COLLECTION = "scale"
COMPLETE = "complete.json"
SEED = 19
WRITE_BATCH = 1000  # records per Chroma add while building
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

    def server(self) -> ChromaServer:
        return ChromaServer(self.path / "db")


def ensure_scale_store(
    n_chunks: int, corpus: CorpusVectors, embedder: Embedder, cache: Path = CACHE
) -> ScaleStore:
    """The store of ``n_chunks`` chunks, built (through a ``chroma run`` server) unless cached."""
    sentence_chunks = min(SENTENCE_CHUNKS, n_chunks)
    marker = {
        "version": VERSION,
        "n_chunks": n_chunks,
        "sentence_chunks": sentence_chunks,
        "seed": SEED,
        "corpus": corpus.key(embedder.name)[:16],
    }
    digest = hashlib.sha1(json.dumps(marker, sort_keys=True).encode()).hexdigest()[:10]
    folder = cache / f"scale-{n_chunks}-{digest}"
    done = folder / COMPLETE
    if done.exists():
        saved = json.loads(done.read_text(encoding="utf-8"))
        return ScaleStore(folder, n_chunks, sentence_chunks, saved["build_s"], False)
    for stale in cache.glob(f"scale-{n_chunks}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True)
    store = ScaleStore(folder, n_chunks, sentence_chunks, 0.0, True)
    started = time.perf_counter()
    server = store.server().start()
    try:
        # chromadb's own client, without citeqa's 30 s request timeout: on a loaded machine a
        # write into a large HNSW index can take longer, and the build has no one waiting on it.
        client = chromadb.HttpClient(
            port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        index = open_index(client, COLLECTION, embedder, create=True)
        last = [started]

        def progress(written: int) -> None:
            if time.perf_counter() - last[0] > 60:
                last[0] = time.perf_counter()
                rate = written / (last[0] - started)
                log.info(
                    "scale store: %d/%d chunks written, %.0f chunks/s", written, n_chunks, rate
                )

        write_store(index, WRITE_BATCH, n_chunks, corpus, SEED, sentence_chunks, progress)
    finally:
        server.stop()
    store.build_s = time.perf_counter() - started
    done.write_text(json.dumps({**marker, "build_s": store.build_s}), encoding="utf-8")
    return store


def main() -> None:
    """``python -m bench.scale_store N``: build (or find) the store of N chunks."""
    import sys

    from citeqa.embedding import MiniLMOnnxEmbedder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    embedder = MiniLMOnnxEmbedder()
    corpus = corpus_vectors(bundled_store(embedder), embedder)
    store = ensure_scale_store(int(sys.argv[1]), corpus, embedder)
    log.info("%s: %d chunks, built in %.0f s", store.path, store.chunks, store.build_s)


if __name__ == "__main__":
    main()
