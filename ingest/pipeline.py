"""Incremental, idempotent ingest of one source into the index.

The collection itself is the manifest: every chunk carries its ``source`` and content-derived
id, so a run computes the chunk ids the source should have, and then

* embeds and upserts only the ids that are missing (nothing, when the corpus is unchanged),
* deletes the ids of that source that are no longer expected (changed or removed documents).

Sentence records (one per :func:`quotable` sentence of a chunk) are written before their chunk
and deleted after it, so a chunk that exists always has its sentences. An interrupted run
leaves a subset of the expected records plus possibly stale ones; the next run converges to
exactly the expected set.

A chunk counts as present only when its stored ``doc_hash`` is the document's current one: the
chunks of a changed document are all rewritten, even those whose id (content) did not change,
so that each version is whole and its offsets are right. Each chunk records ``doc_chunks`` and
``ingested_at``, from which readers pick one complete version per document
(:func:`citeqa.store.visible_chunks`) while a re-ingest is under way.
Writes go in batches no larger than ``client.get_max_batch_size()``; each batch is written
while the next one is embedded (:mod:`ingest.overlap`), one write at a time and in the order
above, so readers and interrupted runs see exactly what writing in turn would show.

A file's chunks also record its ``file_digest`` (its bytes and the readers' version) and
``chunked_with`` (the chunker's version and budget). :meth:`Ingestor.stored` gives, per
document the store holds as one complete version made the way this ingestor would make it,
that digest: the reader does not extract a file whose bytes still have it, and the ingestor
keeps its records as they are. An unchanged re-ingest reads the store and hashes the files,
nothing more (no extraction, chunking or embedding).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
from chromadb.api.types import Where
from llama_index.core.schema import Document, TextNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict

from citeqa.embedding import Embedder
from citeqa.store import DOC_CHUNKS, INGESTED_AT, Index, batches, get_all
from ingest.chunker import SentenceChunker
from ingest.formats import FILE_DIGEST, Limits
from ingest.overlap import Batch, embed_and_write
from ingest.pacing import Pacer, paced_upsert
from ingest.progress import Reporter, stage_meter
from ingest.readers import ReadResult, read_source, source_key
from ingest.vectors import SENTENCE_MEAN, chunk_vectors, plan_texts

EMBED_BATCH = 64
LETTER = re.compile(r"[^\W\d_]")  # a letter of any script: a word character, not a digit or _
CHUNKED_WITH = "chunked_with"  # chunk metadata: chunker version and budget that made it
MARKS = (FILE_DIGEST, CHUNKED_WITH)  # what makes a stored document's file need no reading


@dataclass
class IngestSummary:
    """What one ingest run did."""

    source: str
    documents: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        """Documents this run added, updated or deleted."""
        return self.added + self.updated + self.deleted

    def line(self) -> str:
        return (
            f"{self.source}: {self.documents} documents - added {self.added}, updated "
            f"{self.updated}, unchanged {self.unchanged}, deleted {self.deleted}, skipped "
            f"{len(self.skipped)}; {self.chunks_written} chunks written, {self.embedded} texts "
            f"embedded, {self.seconds:.1f} s"
        )


@dataclass
class Stored:
    """What the store holds of one source: its chunks' metadata and its sentence ids."""

    chunks: dict[str, dict[str, object]]  # chunk id -> metadata
    sentences: set[str]

    def whole_files(self, chunked_with: str) -> dict[str, str]:
        """Doc id -> file digest of each document held as one complete version that
        records its file digest and was chunked ``chunked_with``."""
        versions: dict[str, list[dict[str, object]]] = {}
        for meta in self.chunks.values():
            versions.setdefault(str(meta.get("doc_id")), []).append(meta)
        whole = {}
        for doc_id, metas in versions.items():
            digests = {str(m.get(FILE_DIGEST, "")) for m in metas}
            hashes = {m.get("doc_hash") for m in metas}
            made = {m.get(CHUNKED_WITH) for m in metas}
            counts = {m.get(DOC_CHUNKS) for m in metas}
            if (
                len(digests) == len(hashes) == 1
                and made == {chunked_with}
                and counts == {len(metas)}
                and "" not in digests
            ):
                whole[doc_id] = digests.pop()
        return whole


@dataclass
class _Plan:
    nodes: dict[str, TextNode]
    sentences: dict[str, tuple[str, dict[str, object]]]  # id -> (text, metadata)
    existing_chunks: dict[str, str]  # chunk id -> doc id
    existing_sentences: set[str]
    existing_hashes: dict[str, str] = field(default_factory=dict)  # chunk id -> doc_hash
    kept: set[str] = field(default_factory=set)  # chunk ids of documents not read again
    relabel: dict[str, dict[str, str]] = field(default_factory=dict)  # chunk id -> new marks
    changed: set[str] = field(default_factory=set)  # doc ids added or updated

    def to_write(self) -> set[str]:
        """Chunk ids missing, or stored for another version of their document."""
        return {
            cid
            for cid, node in self.nodes.items()
            if self.existing_hashes.get(cid) != node.metadata["doc_hash"]
        }


class Ingestor:
    """Writes documents of one source into an :class:`Index`."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        chunker: SentenceChunker,
        max_batch: int,
        read_page: int | None = None,
        overlap_writes: bool = True,
        max_records_per_s: float | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.chunker = chunker
        self.max_batch = max_batch
        self.read_page = read_page  # records per Chroma get when planning; None: the default
        # Write batch N while batch N+1 embeds (ingest.overlap); False: one after the other.
        self.overlap_writes = overlap_writes
        self.max_records_per_s = max_records_per_s  # ingest.pacing; None: unpaced

    @property
    def chunked_with(self) -> str:
        return self.chunker.chunking

    @property
    def mean_vectors(self) -> bool:
        """Whether chunk vectors are the mean of their sentences' (ingest.vectors)."""
        return self.chunker.vectors == SENTENCE_MEAN

    def stored(self, source: str) -> Stored:
        """What the store holds of ``source``; :meth:`Stored.whole_files` of it tells the
        reader which files need no reading, and :meth:`ingest` plans with it."""
        where: Where = {"source": source}
        existing = get_all(self.index.chunks, ["metadatas"], where, self.read_page)
        chunks = {
            cid: dict(meta or {})
            for cid, meta in zip(existing.ids, existing.metadatas, strict=True)
        }
        return Stored(chunks, set(get_all(self.index.sentences, [], where, self.read_page).ids))

    def ingest_path(
        self, path: Path, progress: Reporter | None = None, limits: Limits | None = None
    ) -> IngestSummary:
        """Read and write ``path`` (a folder, a paper listing or a file); files the store
        already holds, byte for byte, are neither read nor written again."""
        stored = self.stored(source_key(path))
        read = read_source(path, stored.whole_files(self.chunked_with), limits)
        return self.ingest(read, progress=progress, stored=stored)

    def ingest(
        self,
        read: ReadResult,
        progress: Reporter | None = None,
        on_batch: Callable[[int], None] | None = None,
        stored: Stored | None = None,
    ) -> IngestSummary:
        """Write ``read`` into the index; ``progress`` reports chunking and embedding.
        ``stored``: what :meth:`stored` gave before ``read`` was read (read now otherwise)."""
        started = time.perf_counter()
        documents = len(read.documents) + len(read.unchanged)
        summary = IngestSummary(source=read.source, documents=documents)
        summary.skipped = list(read.skipped)
        plan = self._plan(read, progress, stored or self.stored(read.source))
        self._count_documents(plan, read, summary)
        self._write(plan, summary, progress, on_batch)
        self._relabel(plan)
        self._delete_stale(plan, summary)
        summary.seconds = time.perf_counter() - started
        return summary

    def _plan(self, read: ReadResult, progress: Reporter | None, stored: Stored) -> _Plan:
        nodes: dict[str, TextNode] = {}
        sentences: dict[str, tuple[str, dict[str, object]]] = {}
        ingested_at = time.time()
        meter = stage_meter(progress, f"{read.source}: chunking", len(read.documents), "document")
        for document in read.documents:
            chunks = self.chunker.chunk_document(document, read.layouts.get(document.doc_id))
            marks = self._marks(document)
            for node in chunks:
                node.metadata.update({DOC_CHUNKS: len(chunks), INGESTED_AT: ingested_at, **marks})
                nodes[node.node_id] = node
                sentences.update(_sentence_records(document, node))
            meter.update(1)
        meter.close()
        existing_chunks = {cid: str(meta.get("doc_id")) for cid, meta in stored.chunks.items()}
        hashes = {cid: str(meta.get("doc_hash")) for cid, meta in stored.chunks.items()}
        unchanged = set(read.unchanged)
        kept = {cid for cid, doc_id in existing_chunks.items() if doc_id in unchanged}
        relabel = {}  # chunks of documents read again, unchanged, that lack today's marks
        for cid, node in nodes.items():
            marks = {k: str(v) for k in MARKS if (v := node.metadata.get(k)) is not None}
            stored_meta = stored.chunks.get(cid, {})
            same_version = stored_meta.get("doc_hash") == node.metadata["doc_hash"]
            if same_version and any(stored_meta.get(k) != v for k, v in marks.items()):
                relabel[cid] = marks
        return _Plan(nodes, sentences, existing_chunks, stored.sentences, hashes, kept, relabel)

    def _marks(self, document: Document) -> dict[str, str]:
        """The file digest and chunking of a document read from a file (none otherwise)."""
        digest = document.metadata.get(FILE_DIGEST)
        return {FILE_DIGEST: str(digest), CHUNKED_WITH: self.chunked_with} if digest else {}

    def _count_documents(self, plan: _Plan, read: ReadResult, summary: IngestSummary) -> None:
        old_docs: dict[str, set[str]] = {}
        for cid, doc_id in plan.existing_chunks.items():
            old_docs.setdefault(doc_id, set()).add(cid)
        new_docs: dict[str, set[str]] = {}
        for cid, node in plan.nodes.items():
            new_docs.setdefault(str(node.metadata["doc_id"]), set()).add(cid)
        for doc_id, ids in new_docs.items():
            if doc_id not in old_docs:
                summary.added += 1
            elif old_docs[doc_id] == ids and ids <= plan.existing_chunks.keys():
                summary.unchanged += 1
                continue
            else:
                summary.updated += 1
            plan.changed.add(doc_id)
        summary.unchanged += len(read.unchanged)
        summary.deleted = len(old_docs.keys() - new_docs.keys() - set(read.unchanged))

    def _write(
        self,
        plan: _Plan,
        summary: IngestSummary,
        progress: Reporter | None,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        rewrite = plan.to_write()
        # Chunks that keep their id but move to the new version go last: until they are
        # rewritten, the old version stays whole (and visible).
        # Within that order, texts of similar length are embedded together: less padding;
        # chunks made of their sentences' vectors go in document order instead (the chunks of
        # a batch share their prefixes).
        missing_chunks = sorted(
            (cid for cid in plan.nodes if cid in rewrite),
            key=lambda cid: (
                cid in plan.existing_hashes,
                self._chunk_order(plan.nodes[cid]),
            ),
        )
        missing_sentences = sorted(
            (
                sid
                for sid, (_, meta) in plan.sentences.items()
                if sid not in plan.existing_sentences or meta["chunk_id"] in rewrite
            ),
            key=lambda sid: len(plan.sentences[sid][0]),
        )
        total = len(missing_chunks) + len(missing_sentences)
        # Made of their sentences' vectors, chunks are written with their sentences.
        with_chunks: dict[str, list[str]] = {}
        if self.mean_vectors:
            for sid in missing_sentences:
                cid = str(plan.sentences[sid][1]["chunk_id"])
                if cid in rewrite:
                    with_chunks.setdefault(cid, []).append(sid)
            missing_sentences = [
                s for s in missing_sentences if plan.sentences[s][1]["chunk_id"] not in rewrite
            ]
        documents = summary.added + summary.updated
        label = f"{summary.source}: embedding ({documents} documents)"
        meter = stage_meter(progress, label, total, "text")
        step = min(EMBED_BATCH, self.max_batch)
        # A changed document is logged (citeqa.changes) once its new version is whole.
        pending: dict[str, set[str]] = {doc_id: set() for doc_id in plan.changed}
        versions: dict[str, tuple[str, int]] = {}
        chunk_ids: dict[str, list[str]] = {}
        for cid, node in plan.nodes.items():
            doc_id = str(node.metadata["doc_id"])
            versions[doc_id] = (str(node.metadata["doc_hash"]), int(node.metadata[DOC_CHUNKS]))
            chunk_ids.setdefault(doc_id, []).append(cid)
            if cid in rewrite and doc_id in pending:
                pending[doc_id].add(cid)
        self._log_complete(pending, versions, chunk_ids)
        pacer = Pacer(self.max_records_per_s)

        def written(group: list[str], chunks: bool, sentences: int = 0) -> Callable[[], None]:
            def count() -> None:  # runs once the group's write is done, in batch order
                if chunks:
                    for cid in group:
                        pending.get(str(plan.nodes[cid].metadata["doc_id"]), set()).discard(cid)
                    self._log_complete(pending, versions, chunk_ids)
                texts = len(group) + sentences
                meter.update(texts)
                summary.embedded += texts
                summary.chunks_written += len(group) if chunks else 0
                if on_batch:
                    on_batch(texts)

            return count

        def chunk_batch(group: list[str]) -> Batch:
            if not self.mean_vectors:
                return self._chunk_batch(plan, group, pacer, written(group, chunks=True))
            sentences = [with_chunks.get(cid, []) for cid in group]
            done = written(group, chunks=True, sentences=sum(map(len, sentences)))
            return self._mean_batch(plan, group, sentences, pacer, done)

        # Sentences first: a chunk that exists always has its sentences.
        work = chain(
            (
                self._sentence_batch(plan, group, pacer, written(group, chunks=False))
                for group in batches(missing_sentences, step)
            ),
            (chunk_batch(group) for group in batches(missing_chunks, step)),
        )
        embed_and_write(self.embedder, work, overlap=self.overlap_writes)
        meter.close()

    def _log_complete(
        self,
        pending: dict[str, set[str]],
        versions: dict[str, tuple[str, int]],
        chunk_ids: dict[str, list[str]],
    ) -> None:
        """Log the documents of ``pending`` that have no chunk left to write (and forget
        them): their new version (``versions``: hash, chunks; ``chunk_ids``) is whole, the
        old one is not deleted yet."""
        done = sorted(doc_id for doc_id, left in pending.items() if not left)
        if not done or self.index.log is None:
            return
        self.index.log.append(((d, *versions[d]) for d in done), self.max_batch, chunk_ids)
        for doc_id in done:
            del pending[doc_id]

    def _sentence_batch(
        self, plan: _Plan, ids: list[str], pacer: Pacer, written: Callable[[], None]
    ) -> Batch:
        texts = [plan.sentences[sid][0] for sid in ids]

        def write(vectors: np.ndarray) -> None:
            paced_upsert(
                self.index.sentences,
                pacer,
                ids,
                embeddings=vectors,
                documents=texts,
                metadatas=[plan.sentences[sid][1] for sid in ids],
            )

        return Batch(texts, write, written)

    def _chunk_batch(
        self, plan: _Plan, ids: list[str], pacer: Pacer, written: Callable[[], None]
    ) -> Batch:
        nodes = [plan.nodes[cid] for cid in ids]
        texts = [node.get_content() for node in nodes]

        def write(vectors: np.ndarray) -> None:
            paced_upsert(
                self.index.chunks,
                pacer,
                ids,
                embeddings=vectors,
                documents=texts,
                metadatas=[node_to_metadata_dict(n, remove_text=True) for n in nodes],
            )

        return Batch(texts, write, written)

    def _mean_batch(
        self,
        plan: _Plan,
        ids: list[str],
        sentences: list[list[str]],
        pacer: Pacer,
        written: Callable[[], None],
    ) -> Batch:
        """Chunks whose vectors are the mean of their sentences' (:mod:`ingest.vectors`),
        written after those sentences."""
        nodes = [plan.nodes[cid] for cid in ids]
        texts = [node.get_content() for node in nodes]
        prefixes = [n.get_content()[: int(n.metadata["prefix_len"])] for n in nodes]
        sentence_texts = [[plan.sentences[sid][0] for sid in group] for group in sentences]
        mean = plan_texts(sentence_texts, prefixes, texts)
        sentence_ids = [sid for group in sentences for sid in group]

        def write(vectors: np.ndarray) -> None:
            first = 0
            for group in batches(sentence_ids, self.max_batch):
                paced_upsert(
                    self.index.sentences,
                    pacer,
                    group,
                    embeddings=vectors[first : first + len(group)],
                    documents=[plan.sentences[sid][0] for sid in group],
                    metadatas=[plan.sentences[sid][1] for sid in group],
                )
                first += len(group)
            paced_upsert(
                self.index.chunks,
                pacer,
                ids,
                embeddings=chunk_vectors(vectors, mean.members),
                documents=texts,
                metadatas=[node_to_metadata_dict(n, remove_text=True) for n in nodes],
            )

        return Batch(mean.texts, write, written)

    def _chunk_order(self, node: TextNode) -> tuple[str, int]:
        """Batches of chunks embedded whole: by length; made of sentences: by document."""
        if self.mean_vectors:
            return str(node.metadata["doc_id"]), int(node.metadata["chunk_index"])
        return "", len(node.get_content())

    def _relabel(self, plan: _Plan) -> None:
        """Marks the chunks of unchanged documents read again with their file digest, so
        that the next run need not read them (a store written before digests existed)."""
        ids = sorted(plan.relabel)
        for group in batches(ids, self.max_batch):
            self.index.chunks.update(ids=group, metadatas=[plan.relabel[c] for c in group])

    def _delete_stale(self, plan: _Plan, summary: IngestSummary) -> None:
        stale_chunks = [
            cid for cid in plan.existing_chunks if cid not in plan.nodes and cid not in plan.kept
        ]
        for group in batches(stale_chunks, self.max_batch):
            self.index.chunks.delete(ids=group)
        gone = {plan.existing_chunks[cid] for cid in stale_chunks} - {
            str(node.metadata["doc_id"]) for node in plan.nodes.values()
        }
        if gone and self.index.log is not None:
            self.index.log.deleted(gone, self.max_batch)
        stale_sentences = [
            sid
            for sid in plan.existing_sentences
            if sid not in plan.sentences and sid.rsplit("/s", 1)[0] not in plan.kept
        ]
        for group in batches(stale_sentences, self.max_batch):
            self.index.sentences.delete(ids=group)
        summary.chunks_deleted = len(stale_chunks)


def quotable(sentence: str) -> bool:
    """Whether a sentence gets a record (and an embedding): it has a letter, in any script.
    Those without one ('.', '2', '}', a table of contents' dot leaders) answer no question;
    they were 28% of r-vignettes' sentences (5,708 of 18,692), and the rv-dev answers,
    citations and refusals are the same without them (BENCHMARKS.md)."""
    return LETTER.search(sentence) is not None


def _sentence_records(
    document: Document, node: TextNode
) -> Iterable[tuple[str, tuple[str, dict[str, object]]]]:
    text = document.get_content()
    for position, (start, end) in enumerate(json.loads(str(node.metadata["sentences"]))):
        if not quotable(text[start:end]):
            continue
        metadata: dict[str, object] = {
            "chunk_id": node.node_id,
            "doc_id": node.metadata["doc_id"],
            "source": node.metadata["source"],
            "position": position,
            "start": start,
            "end": end,
        }
        yield f"{node.node_id}/s{position}", (text[start:end], metadata)
