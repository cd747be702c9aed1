"""Hybrid retrieval: dense (Chroma, chunks and sentences) + lexical (BM25) with RRF fusion.

* Dense over chunks finds paraphrases; dense over sentences finds the one sentence that states
  a fact even when the rest of its chunk is about something else.
* BM25 (bm25s, Snowball-stemmed) finds exact names ("FastV", "GLM-130B") that a small embedding
  model blurs.
* Reciprocal rank fusion (Cormack et al. 2009) combines the three rankings without having to
  calibrate their scores against each other.

BM25 searches a :class:`~service.answering.lexical_views.LexicalIndex`, which gives each
request one consistent view (:mod:`service.answering.lexical_views`): either the
:class:`~service.answering.lexical_views.SnapshotIndex` (bm25s, in process memory, rebuilt from
the whole chunk collection when its record count changes, or when Chroma returns an id the
snapshot does not know or lacks one it holds, checked at most every ``refresh_s`` seconds), or
the tantivy index of :mod:`service.answering.lexical`, which follows the change log. Either
holds only :func:`~citeqa.store.visible_chunks` (one complete version per document), and every
hit is taken from the view: a search during a re-ingest never mixes two versions of a document.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from chromadb.errors import InternalError

from citeqa.config import MAX_TOP_K
from citeqa.embedding import Embedder
from citeqa.errors import StoreNotReadyError
from citeqa.store import Index, get_with_vectors, public_source
from citeqa.text import (
    mentions,
    name_keys,
)
from service.answering import overview, spelling
from service.answering.corpus import CorpusStats
from service.answering.lexical_views import Chunk, LexicalIndex, LexicalView, SnapshotIndex
from service.answering.question import Question

# A search's three rankings are independent: the lexical one runs while the question is
# embedded, the two dense queries of Chroma side by side (each mostly a wait on the server or
# on tantivy/ONNX code that releases the GIL). One pool per process, shared by the requests.
_RANKINGS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="citeqa-ranking")

T = TypeVar("T")
Overview = list[tuple[str, float]]  # chunk ids that stand for the collection, with scores


@dataclass
class Hit:
    """One retrieved chunk."""

    chunk_id: str
    doc_id: str
    title: str
    text: str
    score: float
    url: str
    metadata: dict[str, Any]
    # cosine similarity of chunk and question; 0.0 outside the dense results of a search
    # that answers nothing (HybridRetriever.retrieve_hits's ``cosines``)
    dense: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)
    collection: str = ""  # the Chroma collection it was retrieved from

    @property
    def source(self) -> str:
        """Where the document was ingested from (:func:`citeqa.store.public_source`)."""
        return public_source(self.doc_id, str(self.metadata.get("source", "")))

    @property
    def body(self) -> str:
        """The chunk text without the title line."""
        return self.text[int(self.metadata.get("prefix_len", 0)) :]

    def public(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "url": self.url or None,
            "score": round(self.score, 6),
            "text": self.body,
            **self.where(),
        }

    def where(self) -> dict[str, Any]:
        """The chunk's first page (``page_end`` when it runs onto others, ``page_label`` when
        the PDF prints another label on it) and section, None where unknown (the bundled
        listing has neither), and :attr:`source`."""
        meta = self.metadata
        first, last = meta.get("page_start"), meta.get("page_end")
        labels = json.loads(str(meta.get("page_labels") or "{}"))
        return {
            "page": first,
            "page_end": last if last != first else None,
            "page_label": labels.get(str(first)),
            "section": meta.get("section") or None,
            "source": self.source,
        }


@dataclass
class Retrieval:
    """Hits plus the query embedding (reused by the answerer)."""

    question: Question
    query_vector: np.ndarray
    hits: list[Hit]
    # The statistics of the lexical snapshot the hits were taken from, and the question's
    # names that no document of it mentions: per request, never read off a shared object.
    stats: CorpusStats = field(default_factory=CorpusStats, repr=False)
    unknown_names: list[str] = field(default_factory=list)
    # Names the collection never mentions read as the one it does that they are a slip of
    # (written -> read as): ``question`` is the question so respelled.
    read_as: dict[str, str] = field(default_factory=dict)
    # How long each step took, in ms: "names" (first: the question's names looked up, a slip
    # in one read), "lexical" and "embed" from then, "dense" and "sentence" from the
    # embedding; then "hits" (their texts from the lexical view), "vectors" (cosines of hits
    # the dense query did not return; for an answer only), and "total" (GET /v1/search's
    # Server-Timing header).
    timings_ms: dict[str, float] = field(default_factory=dict)


def _timed(timings: dict[str, float], step: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``, its time in ms written to ``timings[step]``."""
    begun = time.perf_counter()
    try:
        return work(*args)
    finally:
        timings[step] = (time.perf_counter() - begun) * 1000


def with_further_passages(ranked: list[Hit], top_k: int) -> list[Hit]:
    """The ``top_k`` first of ``ranked``, then those after them that belong to one of their
    documents. A long document's answer often sits in a passage ranked just below the cut,
    under its own better-matching passages: a document that made the top is read further;
    one that did not stays out."""
    hits = ranked[:top_k]
    documents = {h.doc_id for h in hits}
    return hits + [h for h in ranked[top_k:] if h.doc_id in documents]


def unknown_names(view: LexicalView, question: Question) -> list[str]:
    """The names in the question that no chunk of ``view`` mentions, however it is spelled
    ("Places365", "Kinetics-700"), nor a form the corpus defines for it ("GDPR" for "General
    Data Protection Regulation")."""

    def known(key: str) -> bool:
        spellings = (key, key[:-1]) if key.endswith("s") and len(key) > 3 else (key,)  # "A100s"
        return any(view.has_key(s) for s in spellings)

    return [
        name
        for name in question.names
        if all(any(not known(k) for k in name_keys(form)) for form in view.stats.spellings(name))
    ]


def read_names(view: LexicalView, question: Question) -> tuple[Question, list[str], dict[str, str]]:
    """The question as searched, the names of it no chunk of ``view`` mentions, and those
    read as a slip of a name the collection writes (:func:`spelling.corrections`): the
    question is respelled with them, and its unknown names are those left."""
    unknown = unknown_names(view, question)
    read_as = spelling.corrections(view, unknown) if unknown else {}
    if not read_as:
        return question, unknown, read_as
    question = question.respelled(read_as)
    return question, unknown_names(view, question), read_as


def naming(question: Question, found: list[Chunk], stats: CorpusStats) -> list[str]:
    """Of the chunks BM25 ``found``, those that mention the names in the question ("SHIKE",
    "DeepNet") exactly, most (IDF-weighted) names first. Stemmed BM25 conflates "DeepNet" with
    "DeepNets-1M", and two dense rankings outvote one lexical ranking in the fusion: a paper
    the question names must not lose to papers that are merely close."""
    asked = list(question.names)
    if not asked:
        return []
    weights = [stats.name_weight(n) for n in asked]
    scored = []
    for rank, chunk in enumerate(found):
        lowered = chunk.text.lower()
        share = sum(w for n, w in zip(asked, weights, strict=True) if mentions(lowered, n))
        if share:
            scored.append((-share, rank, chunk.id))
    return [cid for *_, cid in sorted(scored)]


class HybridRetriever:
    """Hybrid search over a citeqa :class:`Index` (llama-index users have
    :class:`service.answering.llama_index.CiteqaRetriever`)."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        candidate_k: int = 30,
        rrf_k: int = 60,
        refresh_s: float = 2.0,
        lexical: LexicalIndex | None = None,
    ) -> None:
        """``lexical``: where BM25 searches (service.answering.lexical.build_lexical); by
        default a :class:`SnapshotIndex` checked every ``refresh_s`` seconds."""
        self.index = index
        self.embedder = embedder
        self.candidate_k = candidate_k
        self.rrf_k = rrf_k
        self.lexical: LexicalIndex = lexical or SnapshotIndex(index, refresh_s)
        # The overview of each live view (dropped with the view): view -> top k -> chunks.
        self._overviews: weakref.WeakKeyDictionary[LexicalView, dict[int, Overview]] = (
            weakref.WeakKeyDictionary()
        )
        self._overviews_lock = threading.Lock()

    def retrieve_hits(
        self,
        question: Question,
        top_k: int,
        listed: int = overview.MAX_LISTED,
        further: int = 0,
        cosines: bool = True,
    ) -> Retrieval:
        """The ``top_k`` best chunks for a fact question; for a list question ("which papers
        discuss X?") the best chunk of each matching document, at most ``listed`` of them.

        ``further``: for a fact question, also the passages of the top ``top_k``'s documents
        that rank among the ``further`` next (:func:`with_further_passages`).

        ``cosines``: give every hit its chunk's cosine (:meth:`_stored_cosines`), which an
        answer reads; a search that only ranks leaves it 0.0 for the few hits outside the dense
        results, and so leaves out a third wait on Chroma (``"vectors"``)."""
        top_k = max(1, min(MAX_TOP_K, top_k))
        lexical = self.lexical.view()
        if lexical.empty:
            raise StoreNotReadyError("the index is empty: run `citeqa ingest`")
        k = max(self.candidate_k, top_k)
        if question.asks_documents:  # answered by documents: rank them over a wider pool
            k = max(k, overview.POOL)
        begun = time.perf_counter()
        timings: dict[str, float] = {}
        question, unknown, read_as = _timed(timings, "names", read_names, lexical, question)
        searched = _RANKINGS.submit(_timed, timings, "lexical", lexical.search, question.text, k)
        vector = _timed(timings, "embed", self.embedder.embed, [question.text])[0]
        nearest = _RANKINGS.submit(_timed, timings, "dense", self._dense_chunks, vector, k)
        # Up to 3k chunks, each with its best sentence's cosine: the k first are a ranking,
        # all of them a document list's evidence.
        by_sentence = _timed(timings, "sentence", self._dense_sentences, vector, k)
        dense, found = nearest.result(), searched.result()
        rankings = {
            "dense": list(dense),
            "sentence": list(by_sentence)[:k],
            "lexical": [c.id for c in found],
            "names": naming(question, found, lexical.stats),
        }
        if not lexical.knows(rankings["dense"]):
            self.lexical.stale(rankings["dense"])  # written after the view
        if question.about_collection:
            fused = self._overview(lexical, top_k)
        elif question.asks_documents:
            pool = {c.id: c for c in found}
            pool.update(lexical.chunks([c for c in {*dense, *by_sentence} if c not in pool]))
            order = [cid for cid, _ in self._fuse(rankings)]
            ranked = overview.rank_documents(question, pool, by_sentence, lexical.stats, order)
            fused = ranked[:listed]
            top_k = len(fused)
        else:
            fused = self._fuse(rankings)
        if question.lists_documents:
            further = 0
        hits = _timed(
            timings, "hits", self._hits, fused[: top_k + further], rankings, lexical, found
        )
        hits = with_further_passages(hits, top_k)
        for hit in hits:
            hit.dense = dense.get(hit.chunk_id, 0.0)
        if cosines:
            _timed(timings, "vectors", self._stored_cosines, hits, vector, dense)
        timings["total"] = (time.perf_counter() - begun) * 1000
        return Retrieval(
            question=question,
            query_vector=vector,
            hits=hits,
            stats=lexical.stats,
            unknown_names=unknown,
            read_as=read_as,
            timings_ms=timings,
        )

    def _dense_chunks(self, vector: np.ndarray, k: int) -> dict[str, float]:
        """The k nearest chunks, best first: chunk id -> cosine similarity to the question."""
        result = self.index.chunks.query(
            query_embeddings=[vector.tolist()], n_results=k, include=["distances"]
        )
        distances = result["distances"][0]  # type: ignore[index]
        # The collections use Chroma's cosine space: distance = 1 - cosine similarity.
        return {cid: 1.0 - float(d) for cid, d in zip(result["ids"][0], distances, strict=True)}

    def _dense_sentences(self, vector: np.ndarray, k: int) -> dict[str, float]:
        """The chunks of the 3 * k sentences nearest the question, best first: chunk id -> the
        cosine of its best sentence."""
        # Ids and distances only: a sentence id is "<chunk id>/s<position>" (ingest.pipeline),
        # and fetching the metadata of the records from SQLite cost more than the search itself.
        result = self.index.sentences.query(
            query_embeddings=[vector.tolist()], n_results=k * 3, include=["distances"]
        )
        ranking: dict[str, float] = {}
        for sentence_id, distance in zip(result["ids"][0], result["distances"][0], strict=True):  # type: ignore[index]
            ranking.setdefault(sentence_id.rsplit("/s", 1)[0], 1.0 - float(distance))
        return ranking

    def _overview(self, lexical: LexicalView, top_k: int) -> Overview:
        """For a question about the collection as a whole: the first chunk of the documents
        that stand for it (:func:`service.answering.overview.representatives`), found once
        per view of the collection (a view is replaced when the collection changes)."""
        k = min(top_k, overview.MAX_TOPICS)
        with self._overviews_lock:
            known = self._overviews.setdefault(lexical, {})
            if k in known:
                return known[k]
        found = self._representatives(lexical, k)
        with self._overviews_lock:
            known[k] = found
        return found

    def _representatives(self, lexical: LexicalView, k: int) -> Overview:
        """Grouped from the first chunks of a sample of the documents (all of them up to
        :data:`overview.SAMPLE`), read by id: a collection of 500,000 documents is described
        from 2,000 of them, not from 500,000 vectors read through a filter on every chunk."""
        ids = lexical.sample(overview.SAMPLE)
        if not ids:
            return []
        got = get_with_vectors(self.index.chunks, None, ["embeddings"], ids=ids)
        vector = dict(zip(got["ids"], got["embeddings"], strict=True))  # type: ignore[arg-type]
        found = [cid for cid in ids if cid in vector]  # in the sample's order, not Chroma's
        if not found:
            return []
        vectors = np.asarray([vector[cid] for cid in found], dtype=np.float32)
        chosen = overview.representatives(vectors, k)
        return [(found[i], 1.0 / (rank + 1)) for rank, i in enumerate(chosen)]

    def _fuse(self, rankings: dict[str, list[str]]) -> list[tuple[str, float]]:
        scores: dict[str, float] = {}
        for ranking in rankings.values():
            for rank, cid in enumerate(ranking):
                scores[cid] = scores.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))

    def _hits(
        self,
        fused: list[tuple[str, float]],
        rankings: dict[str, list[str]],
        lexical: LexicalView,
        found: list[Chunk],
    ) -> list[Hit]:
        held = {c.id: c for c in found}
        held.update(lexical.chunks([cid for cid, _ in fused if cid not in held]))
        hits = []
        for cid, score in fused:
            if cid not in held:  # not shown by the view: another version, or written after it
                continue
            meta = held[cid].metadata
            ranks = {name: r.index(cid) + 1 for name, r in rankings.items() if cid in r}
            hits.append(
                Hit(
                    chunk_id=cid,
                    doc_id=str(meta["doc_id"]),
                    title=str(meta["title"]),
                    text=held[cid].text,
                    score=score,
                    url=str(meta.get("url") or ""),
                    metadata=meta,
                    ranks=ranks,
                    collection=self.index.chunks.name,
                )
            )
        return hits

    def _stored_cosines(self, hits: list[Hit], vector: np.ndarray, dense: dict[str, float]) -> None:
        """The cosine similarity of each hit the dense search did not return (the others have
        it from its distances), from the chunk's stored embedding. A get of the embeddings of
        every hit cost more than the dense search itself."""
        others = [h for h in hits if h.chunk_id not in dense]
        if not others:
            return
        by_id = self._stored_vectors([h.chunk_id for h in others])
        if len(by_id) < len(others):
            self.lexical.stale(h.chunk_id for h in others if h.chunk_id not in by_id)  # deleted
        for hit in others:
            if by_id.get(hit.chunk_id) is not None:
                hit.dense = float(np.dot(np.asarray(by_id[hit.chunk_id]), vector))

    def _stored_vectors(self, ids: list[str]) -> dict[str, Any]:
        """The stored embeddings of those of ``ids`` that still exist. A Chroma server answers
        a get that names an id deleted meanwhile (by a re-ingest) with "Error finding id"
        instead of leaving it out, as the embedded store does: then each is asked alone."""
        try:
            got = self.index.chunks.get(ids=ids, include=["embeddings"])
            return dict(zip(got["ids"], got["embeddings"], strict=True))  # type: ignore[arg-type]
        except InternalError:
            found: dict[str, Any] = {}
            for cid in ids:
                try:
                    got = self.index.chunks.get(ids=[cid], include=["embeddings"])
                except InternalError:
                    continue  # deleted
                found.update(zip(got["ids"], got["embeddings"], strict=True))  # type: ignore[arg-type]
            return found

    def warm(self) -> None:
        """Build the lexical view now (a service does it before it reports ready), so that
        the first search does not pay for it (0.2 s for the bundled corpus, ~60 s at 100k)."""
        self.lexical.view()

    def refresh(self) -> None:
        """This process changed the collection (an upload, a delete): its next answer must
        see that at once, not after the refresh or poll interval."""
        self.lexical.refresh()

    @property
    def warmed(self) -> bool:
        """Whether the lexical view has been built."""
        return self.lexical.warmed

    def listing(self) -> LexicalView:
        """The documents a search may return (one complete version each), from the current
        lexical view (:class:`citeqa.catalog.Listing`): listing the documents reads nothing of
        Chroma (a full read took 1.1 s for the 2,075 chunks of r-vignettes), and a page of
        them as many documents as it shows."""
        return self.lexical.view()

    def unknown_names(self, question: Question) -> list[str]:
        """The names in the question that no document of the corpus mentions."""
        return unknown_names(self.lexical.view(), question)

    def stats(self) -> CorpusStats:
        """The statistics of the current lexical view."""
        return self.lexical.view().stats
