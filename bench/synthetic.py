"""Synthetic stores of 10k and 100k chunks, built from the real corpus without re-embedding.

Embedding 100k chunks (plus ~4 sentences each) with the real model would take hours on 2 CPU
cores, so a synthetic store is made of the corpus' own sentences, recombined:

* it holds every real chunk and sentence record, with their real embeddings, then
* synthetic documents of two chunks each, titled after a random real paper; each chunk has as
  many sentences as a random real chunk, drawn at random (seeded) from all real sentences;
* a synthetic sentence record keeps the real embedding of its sentence; a synthetic chunk's
  embedding is the L2-normalised mean of its sentences' embeddings (an approximation of what
  the model would return for the chunk text; :func:`approximation_quality` measures it on the
  real chunks).

Records (ids, texts, metadata) are shaped exactly as the ingest pipeline writes them, in both
collections, so retrieval does the same work on them. Stores are cached under ``bench/.cache``,
keyed by the corpus texts, the embedding model, the size, the seed and :data:`VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from llama_index.core.schema import NodeRelationship, TextNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import DOC_CHUNKS, INGESTED_AT, Index, batches, connect, open_index
from ingest.chunker import chunk_id, doc_hash
from ingest.readers import make_document

VERSION = 4  # bump when the generator changes: cached stores are rebuilt
SOURCE = "synthetic:bench"
BLOCK_CHUNKS = 5000  # chunks generated and written at a time (even: two per document)
COMPLETE = "complete.json"


@dataclass
class Records:
    """The records of one collection: ids, texts, metadata and embeddings (rows aligned)."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: np.ndarray


@dataclass
class CorpusVectors:
    """Everything the real ingest wrote: chunk and sentence records with their embeddings."""

    chunks: Records
    sentences: Records

    def key(self, embedder_name: str) -> str:
        digest = hashlib.sha256(embedder_name.encode())
        for text in sorted(self.chunks.texts) + sorted(self.sentences.texts):
            digest.update(text.encode())
            digest.update(b"\0")
        return digest.hexdigest()


def read_records(collection: Any) -> Records:
    got = collection.get(include=["documents", "metadatas", "embeddings"])
    order = sorted(range(len(got["ids"])), key=lambda i: got["ids"][i])
    return Records(
        ids=[got["ids"][i] for i in order],
        texts=[got["documents"][i] for i in order],
        metadatas=[dict(got["metadatas"][i]) for i in order],
        vectors=np.asarray(got["embeddings"], dtype=np.float32)[order],
    )


def read_corpus_vectors(index: Index) -> CorpusVectors:
    return CorpusVectors(chunks=read_records(index.chunks), sentences=read_records(index.sentences))


def mean_vector(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def approximation_quality(corpus: CorpusVectors) -> list[float]:
    """Cosine of each real chunk embedding and the normalised mean of its sentences' embeddings."""
    rows: dict[str, list[int]] = {}
    for i, meta in enumerate(corpus.sentences.metadatas):
        rows.setdefault(str(meta["chunk_id"]), []).append(i)
    cosines = []
    for i, cid in enumerate(corpus.chunks.ids):
        if cid in rows:
            approx = mean_vector(corpus.sentences.vectors[rows[cid]])
            cosines.append(float(approx @ corpus.chunks.vectors[i]))
    return cosines


@dataclass
class Store:
    settings: Settings
    built_now: bool
    build_s: float | None  # how long the build took (now, or when the cached store was built)
    note: str = ""  # how a cached store differs from one built now, if it does


def ensure_store(
    cache: Path, n_chunks: int, corpus: CorpusVectors, embedder: Embedder, seed: int = 7
) -> Store:
    """A store with ``n_chunks`` chunks, built unless cached."""
    key = corpus.key(embedder.name)
    marker: dict[str, Any] = {
        "version": VERSION,
        "n_chunks": n_chunks,
        "seed": seed,
        "corpus": key[:16],
        "hnsw": store_hnsw(embedder),
    }
    digest = hashlib.sha1(json.dumps(marker).encode()).hexdigest()[:10]
    folder = cache / f"synthetic-{n_chunks}-{digest}"
    settings = Settings(data_dir=folder, collection="bench")
    if (folder / COMPLETE).exists():
        saved = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
        return Store(settings, False, saved.get("build_s"), saved.get("note", ""))
    for stale in cache.glob(f"synthetic-{n_chunks}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    client = connect(settings)
    index = open_index(client, settings.collection, embedder, create=True)
    write_store(index, client.get_max_batch_size(), n_chunks, corpus, seed)
    marker["build_s"] = time.perf_counter() - started
    (folder / COMPLETE).write_text(json.dumps(marker), encoding="utf-8")
    return Store(settings, True, marker["build_s"])


HNSW_KEYS = ("space", "max_neighbors", "ef_construction", "ef_search")


def hnsw_of(collection: Any) -> dict[str, Any]:
    """The HNSW parameters a collection was created (or modified) with."""
    config = (collection.configuration_json or {}).get("hnsw") or {}
    return {key: config.get(key) for key in HNSW_KEYS}


def store_hnsw(embedder: Embedder) -> dict[str, Any]:
    """The HNSW parameters citeqa's store creates collections with (probed in memory), so that
    a cached store is rebuilt when they change."""
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    name = f"probe-{uuid.uuid4().hex[:12]}"
    index = open_index(client, name, embedder, create=True)
    try:
        return hnsw_of(index.chunks)
    finally:
        client.delete_collection(index.chunks.name)
        client.delete_collection(index.sentences.name)


def write_store(
    index: Index,
    max_batch: int,
    n_chunks: int,
    corpus: CorpusVectors,
    seed: int,
    sentence_chunks: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    done_blocks: int = 0,
    block_chunks: int = BLOCK_CHUNKS,
) -> None:
    """The real corpus, then synthetic chunks up to ``n_chunks``; only the first
    ``sentence_chunks`` synthetic chunks (None: all) get their sentence records.

    Written in blocks: block 0 is the real corpus, block ``b`` the synthetic chunks
    ``[(b - 1) * block_chunks, b * block_chunks)``, each generated from ``(seed, b)`` alone. So
    a build stopped after ``done_blocks`` blocks continues with the next one, upserting it (it
    may be partly written; its change log records are written again, which a follower applies
    as once). ``progress(blocks, chunks)`` is called once each block is written whole."""
    if n_chunks < len(corpus.chunks.ids):
        raise ValueError(
            f"{n_chunks} chunks is fewer than the real corpus' {len(corpus.chunks.ids)}"
        )
    real = len(corpus.chunks.ids)
    synthetic = n_chunks - real
    with_sentences = synthetic if sentence_chunks is None else sentence_chunks
    generator = SyntheticChunks(corpus, seed, block_chunks)
    blocks = 1 + -(-synthetic // block_chunks)
    for block in range(done_blocks, blocks):
        again = block == done_blocks and done_blocks > 0  # perhaps partly written
        if block == 0:
            chunks, sentences = corpus.chunks, corpus.sentences
        else:
            first = (block - 1) * block_chunks
            chunks, sentences = generator.block(block, min(block_chunks, synthetic - first))
            if first >= with_sentences:
                sentences = None
        if sentences is not None:
            _add(index.sentences, sentences, max_batch, again)  # sentences first, as the pipeline
        _add(index.chunks, chunks, max_batch, again)
        _log(index, chunks, max_batch)
        if progress is not None:
            progress(block + 1, real + min(block * block_chunks, synthetic))


def _add(collection: Any, records: Records, max_batch: int, upsert: bool = False) -> None:
    write = collection.upsert if upsert else collection.add
    for rows in batches(list(range(len(records.ids))), max_batch):
        write(
            ids=[records.ids[i] for i in rows],
            documents=[records.texts[i] for i in rows],
            metadatas=[records.metadatas[i] for i in rows],
            embeddings=records.vectors[rows],
        )


def _log(index: Index, chunks: Records, max_batch: int) -> None:
    """Log the documents of ``chunks`` as complete, as the ingest pipeline does once it has
    written a version: the lexical index follows that log (citeqa.changes)."""
    if index.log is None:
        return
    versions = {
        str(m["doc_id"]): (str(m["doc_hash"]), int(m[DOC_CHUNKS])) for m in chunks.metadatas
    }
    index.log.append(((d, *v) for d, v in versions.items()), max_batch)


class SyntheticChunks:
    """Deterministic generator of synthetic documents (two chunks each) from real sentences:
    block ``b`` (from 1) depends on ``(seed, b)`` only, so blocks can be made in any order."""

    def __init__(self, corpus: CorpusVectors, seed: int, block_chunks: int = BLOCK_CHUNKS) -> None:
        if block_chunks % 2:
            raise ValueError("blocks hold whole documents of two chunks: an even size")
        self.corpus = corpus
        self.seed = seed
        self.block_chunks = block_chunks
        self.rng = np.random.default_rng(seed)
        self.titles = sorted({str(m["title"]) for m in corpus.chunks.metadatas})
        self.shapes = [len(json.loads(str(m["sentences"]))) for m in corpus.chunks.metadatas]
        self.next_doc = 0
        self.ingested_at = 1.0  # fixed: a cached store is the same whenever it was built

    def block(self, number: int, n_chunks: int) -> tuple[Records, Records]:
        """Block ``number``'s ``n_chunks`` chunks (at most ``block_chunks``)."""
        self.rng = np.random.default_rng([self.seed, number])
        self.next_doc = (number - 1) * (self.block_chunks // 2)
        chunks = Records([], [], [], np.zeros((0, 0)))
        sentences = Records([], [], [], np.zeros((0, 0)))
        chunk_vectors: list[np.ndarray] = []
        sentence_rows: list[int] = []
        while len(chunks.ids) < n_chunks:
            per_doc = min(2, n_chunks - len(chunks.ids))
            for record, rows in self._document(per_doc):
                chunks.ids.append(record[0])
                chunks.texts.append(record[1])
                chunks.metadatas.append(record[2])
                chunk_vectors.append(mean_vector(self.corpus.sentences.vectors[rows]))
                for position, row in enumerate(rows):
                    sentences.ids.append(f"{record[0]}/s{position}")
                    sentences.texts.append(self.corpus.sentences.texts[row])
                    sentences.metadatas.append(record[3][position])
                    sentence_rows.append(row)
        chunks.vectors = np.stack(chunk_vectors)
        sentences.vectors = self.corpus.sentences.vectors[sentence_rows]
        return chunks, sentences

    def _document(
        self, n_chunks: int
    ) -> Iterator[tuple[tuple[str, str, dict[str, Any], list[dict[str, Any]]], list[int]]]:
        number = self.next_doc
        self.next_doc += 1
        doc_id = f"synthetic-{number:06d}"
        title = f"{self.titles[int(self.rng.integers(len(self.titles)))]} (synthetic {number})"
        picks = [
            list(self.rng.integers(len(self.corpus.sentences.ids), size=self._shape()))
            for _ in range(n_chunks)
        ]
        bodies = [" ".join(self.corpus.sentences.texts[int(r)] for r in rows) for rows in picks]
        text = " ".join(bodies)
        document = make_document(doc_id, title, text, SOURCE)
        digest = doc_hash(title, text)
        start = 0
        for index, rows in enumerate(picks):
            spans = self._spans(start, [int(r) for r in rows])
            content = f"{title}\n{bodies[index]}"
            cid = chunk_id(doc_id, index, content)
            node = TextNode(
                id_=cid,
                text=content,
                metadata={
                    "doc_id": doc_id,
                    "title": title,
                    "url": "",
                    "source": SOURCE,
                    "doc_hash": digest,
                    "chunk_index": index,
                    "start": start,
                    "prefix_len": len(title) + 1,
                    "sentences": json.dumps(spans),
                    DOC_CHUNKS: n_chunks,
                    INGESTED_AT: self.ingested_at,
                },
                relationships={NodeRelationship.SOURCE: document.as_related_node_info()},
            )
            sentence_metas = [
                {
                    "chunk_id": cid,
                    "doc_id": doc_id,
                    "source": SOURCE,
                    "position": p,
                    "start": s,
                    "end": e,
                }
                for p, (s, e) in enumerate(spans)
            ]
            yield (
                (cid, content, node_to_metadata_dict(node, remove_text=True), sentence_metas),
                [int(r) for r in rows],
            )
            start += len(bodies[index]) + 1

    def _shape(self) -> int:
        return self.shapes[int(self.rng.integers(len(self.shapes)))]

    def _spans(self, start: int, rows: list[int]) -> list[tuple[int, int]]:
        spans = []
        for row in rows:
            length = len(self.corpus.sentences.texts[row])
            spans.append((start, start + length))
            start += length + 1
        return spans
