"""Hybrid retrieval: dense (Chroma, chunks and sentences) + lexical (BM25) with RRF fusion.

* Dense over chunks finds paraphrases; dense over sentences finds the one sentence that states
  a fact even when the rest of its chunk is about something else.
* BM25 (bm25s, Snowball-stemmed) finds exact names ("FastV", "GLM-130B") that a small embedding
  model blurs.
* Reciprocal rank fusion (Cormack et al. 2009) combines the three rankings without having to
  calibrate their scores against each other.

The BM25 index lives in process memory, built from the chunk collection, and is rebuilt when the
collection's record count changes, or when Chroma returns an id the snapshot does not know or
lacks one it holds (a change that kept the count), checked at most every ``refresh_s`` seconds;
so replicas sharing a Chroma server pick up new ingests without a restart. The snapshot holds
only :func:`~citeqa.store.visible_chunks` (one complete version per document), and every hit is
taken from it: a search during a re-ingest never mixes two versions of a document.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import bm25s
import numpy as np

from citeqa.embedding import Embedder
from citeqa.errors import StoreNotReadyError
from citeqa.store import Index, get_all, public_source, visible_chunks
from citeqa.text import (
    mentions,
    name_keys,
    name_weight,
    squashed,
    stemmer,
    words,
)
from service.answering.corpus import CorpusStats
from service.answering.question import Question

MAX_TOP_K = 50
# BM25 scores equal to this many decimals are a tie (float32 sums differ in the last bits between
# SIMD kernels), broken by chunk id; TIE_MARGIN more candidates are read so that a tie across
# the k-th place is broken the same way everywhere.
SCORE_DECIMALS = 4
TIE_MARGIN = 10
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import


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
    dense: float = 0.0  # cosine similarity of chunk and question
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


_COMPOUND = re.compile(r"\b\w+(?:[-./]\w+)+\b")


def with_compounds(text: str) -> str:
    """Adds each hyphenated name once more as one token ("DeepSeek-V3" -> "deepseekv3"), so
    BM25 tells DeepSeek-V3 from DeepSeek-VL2 instead of matching only "deepseek" and "v3"."""
    joined = [re.sub(r"[-./]", "", m.group(0)) for m in _COMPOUND.finditer(text)]
    return f"{text} {' '.join(joined)}" if joined else text


class _LexicalIndex:
    def __init__(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> None:
        self.ids, self.texts, self.metadatas = ids, texts, metadatas
        self.position = {cid: i for i, cid in enumerate(ids)}  # once, not per query (100k: 40 ms)
        self.known: frozenset[str] = frozenset(ids)  # every id in the collection, shown or not
        self.retriever = bm25s.BM25()
        self.stats = CorpusStats.build(texts, [str(m.get("doc_id", "")) for m in metadatas])
        self.idf, self.default_idf = self.stats.idf, self.stats.default_idf
        # For names the corpus never mentions: every word squashed (the usual, quick answer),
        # and the whole corpus squashed, for names written across words ("Human Eval").
        self.vocabulary = frozenset(squashed(w) for t in texts for w in words(t))
        self.squashed = "|".join(squashed(t) for t in texts)
        if texts:
            tokens = bm25s.tokenize(
                [with_compounds(t) for t in texts],
                stopwords="en",
                stemmer=stemmer(),
                show_progress=False,
            )
            self.retriever.index(tokens, show_progress=False)

    def search(self, question: str, k: int) -> list[tuple[int, float]]:
        if not self.texts:
            return []
        tokens = bm25s.tokenize(
            [with_compounds(question)],
            stopwords="en",
            stemmer=stemmer(),
            show_progress=False,
            allow_empty=True,
        )
        # bm25s picks its top k with numpy's argpartition, whose order among equal scores
        # depends on the CPU's SIMD kernel (AVX-512 and AVX2 disagree): two chunks of one paper
        # often score the same. So take a margin past k, and order by the score rounded past
        # float noise, then by chunk id: the same ranking on every machine.
        wanted = min(k + TIE_MARGIN, len(self.texts))
        docs, scores = self.retriever.retrieve(tokens, k=wanted, show_progress=False)
        found = [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        found.sort(key=lambda hit: (-round(hit[1], SCORE_DECIMALS), self.ids[hit[0]]))
        return found[:k]

    def unknown(self, name: str) -> bool:
        """No chunk mentions the name, however it is spelled ("Places365", "Kinetics-700"),
        nor a form the corpus defines for it ("GDPR" for "General Data Protection
        Regulation")."""
        return all(
            any(not self._known(k) for k in name_keys(form)) for form in self.stats.spellings(name)
        )

    def unknown_names(self, question: Question) -> list[str]:
        """The names in the question that no document mentions."""
        return [n for n in question.names if self.unknown(n)]

    def _known(self, key: str) -> bool:
        spellings = (key, key[:-1]) if key.endswith("s") and len(key) > 3 else (key,)  # "A100s"
        return any(s in self.vocabulary or s in self.squashed for s in spellings)

    def naming(self, question: Question, found: list[int]) -> list[str]:
        """Of the chunks BM25 ``found``, those that mention the names in the question
        ("SHIKE", "DeepNet") exactly, most (IDF-weighted) names first. Stemmed BM25 conflates
        "DeepNet" with "DeepNets-1M", and two dense rankings outvote one lexical ranking in
        the fusion: a paper the question names must not lose to papers that are merely close."""
        asked = list(question.names)
        if not asked:
            return []
        weights = [name_weight(n, self.idf, self.default_idf) for n in asked]
        scored = []
        for rank, i in enumerate(found):
            lowered = self.texts[i].lower()
            share = sum(w for n, w in zip(asked, weights, strict=True) if mentions(lowered, n))
            if share:
                scored.append((-share, rank, self.ids[i]))
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
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.candidate_k = candidate_k
        self.rrf_k = rrf_k
        self.refresh_s = refresh_s
        self._lexical: _LexicalIndex | None = None
        self._stale = False
        self._lexical_count = -1
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def retrieve_hits(self, question: Question, top_k: int) -> Retrieval:
        top_k = max(1, min(MAX_TOP_K, top_k))
        vector = self.embedder.embed([question.text])[0]
        lexical = self._lexical_index()
        if not lexical.ids:
            raise StoreNotReadyError("the index is empty: run `citeqa ingest`")
        k = max(self.candidate_k, top_k)
        dense = self._dense_chunks(vector, k)
        found = [i for i, _ in lexical.search(question.text, k)]
        rankings = {
            "dense": list(dense),
            "sentence": self._dense_sentences(vector, k),
            "lexical": [lexical.ids[i] for i in found],
            "names": lexical.naming(question, found),
        }
        if not lexical.known.issuperset(rankings["dense"]):
            self._stale = True  # written after the snapshot
        fused = self._fuse(rankings)
        hits = self._hits(fused[:top_k], rankings, lexical)
        self._attach_dense(hits, vector, dense)
        return Retrieval(
            question=question,
            query_vector=vector,
            hits=hits,
            stats=lexical.stats,
            unknown_names=lexical.unknown_names(question),
        )

    def _dense_chunks(self, vector: np.ndarray, k: int) -> dict[str, float]:
        """The k nearest chunks, best first: chunk id -> cosine similarity to the question."""
        result = self.index.chunks.query(
            query_embeddings=[vector.tolist()], n_results=k, include=["distances"]
        )
        distances = result["distances"][0]  # type: ignore[index]
        # The collections use Chroma's cosine space: distance = 1 - cosine similarity.
        return {cid: 1.0 - float(d) for cid, d in zip(result["ids"][0], distances, strict=True)}

    def _dense_sentences(self, vector: np.ndarray, k: int) -> list[str]:
        # Ids only: a sentence id is "<chunk id>/s<position>" (ingest.pipeline), and fetching
        # the metadata of the 3 * k records from SQLite cost more than the vector search itself.
        result = self.index.sentences.query(
            query_embeddings=[vector.tolist()], n_results=k * 3, include=[]
        )
        ranking: list[str] = []
        for sentence_id in result["ids"][0]:
            chunk = sentence_id.rsplit("/s", 1)[0]
            if chunk not in ranking:
                ranking.append(chunk)
        return ranking[:k]

    def _fuse(self, rankings: dict[str, list[str]]) -> list[tuple[str, float]]:
        scores: dict[str, float] = {}
        for ranking in rankings.values():
            for rank, cid in enumerate(ranking):
                scores[cid] = scores.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))

    def _hits(
        self, fused: list[tuple[str, float]], rankings: dict[str, list[str]], lex: _LexicalIndex
    ) -> list[Hit]:
        position = lex.position
        hits = []
        for cid, score in fused:
            if cid not in position:  # written after the lexical index was built
                continue
            i = position[cid]
            meta = lex.metadatas[i]
            ranks = {name: r.index(cid) + 1 for name, r in rankings.items() if cid in r}
            hits.append(
                Hit(
                    chunk_id=cid,
                    doc_id=str(meta["doc_id"]),
                    title=str(meta["title"]),
                    text=lex.texts[i],
                    score=score,
                    url=str(meta.get("url") or ""),
                    metadata=meta,
                    ranks=ranks,
                    collection=self.index.chunks.name,
                )
            )
        return hits

    def _attach_dense(self, hits: list[Hit], vector: np.ndarray, dense: dict[str, float]) -> None:
        """Each hit's cosine similarity: from the dense search's distances when the hit is
        among its results (nearly always), else from the chunk's stored embedding. A get of
        the embeddings of every hit cost more than the dense search itself."""
        for hit in hits:
            hit.dense = dense.get(hit.chunk_id, 0.0)
        others = [h for h in hits if h.chunk_id not in dense]
        if not others:
            return
        got = self.index.chunks.get(ids=[h.chunk_id for h in others], include=["embeddings"])
        by_id = dict(zip(got["ids"], got["embeddings"], strict=True))  # type: ignore[arg-type]
        if len(by_id) < len(others):
            self._stale = True  # deleted after the snapshot
        for hit in others:
            if by_id.get(hit.chunk_id) is not None:
                hit.dense = float(np.dot(np.asarray(by_id[hit.chunk_id]), vector))

    def warm(self) -> None:
        """Build the BM25 snapshot now (a service does it before it reports ready), so that
        the first search does not pay for it (0.2 s for the bundled corpus, ~60 s at 100k)."""
        self._lexical_index()

    def refresh(self) -> None:
        """Rebuild the BM25 snapshot on the next search: this process changed the collection
        (an upload, a delete) and its next answer must see that at once, not after refresh_s."""
        with self._lock:
            self._stale = True
            self._checked_at = 0.0

    @property
    def warmed(self) -> bool:
        """Whether the BM25 snapshot has been built."""
        return self._lexical is not None

    def visible(self) -> list[dict[str, Any]]:
        """The metadata of every chunk a search may return (one complete version per
        document), from the snapshot: listing the documents reads no more of Chroma than a
        search does (a full read took 1.1 s for the 2,075 chunks of r-vignettes)."""
        return self._lexical_index().metadatas

    def unknown_names(self, question: Question) -> list[str]:
        """The names in the question that no document of the corpus mentions."""
        return self._lexical_index().unknown_names(question)

    def stats(self) -> CorpusStats:
        """The statistics of the current lexical snapshot."""
        return self._lexical_index().stats

    def _lexical_index(self) -> _LexicalIndex:
        now = time.monotonic()
        with self._lock:
            if self._lexical is not None and now - self._checked_at < self.refresh_s:
                return self._lexical
            self._checked_at = now
            count = self.index.chunks.count()
            if self._lexical is None or count != self._lexical_count or self._stale:
                self._stale = False
                self._lexical = self._load_lexical()
                self._lexical_count = count
            return self._lexical

    def _load_lexical(self) -> _LexicalIndex:
        chunks = get_all(self.index.chunks, ["documents", "metadatas"])
        ids, texts, metas = chunks.ids, chunks.documents, chunks.metadatas
        order = sorted(visible_chunks(metas), key=lambda i: ids[i])
        lexical = _LexicalIndex(
            [ids[i] for i in order], [texts[i] for i in order], [dict(metas[i]) for i in order]
        )
        lexical.known = frozenset(ids)
        return lexical
