"""Questions about documents rather than facts: "which papers are about X?", "what is this
collection about?".

A list of documents answers the first: :func:`rank_documents` ranks the collection's
*documents* over a wide pool of chunks (the top chunks of the dense, sentence and lexical
searches; :data:`POOL` of each), not the few top chunks a fact question reads, and keeps every
document whose evidence is close to the best one's. The evidence of a document is the best
cosine of one of its sentences with the question plus the IDF-weighted share of the question's
topic terms its pooled chunks hold (the words naming documents, "papers", "vignettes", are no
topic; nor are words no pooled document holds: they cannot tell documents apart). "Close" is
relative to the pool: at least :data:`KEEP` of the way from the pool's median document to the
best one, so the rule reads no absolute cosine or IDF of one corpus.

The second is answered by the collection as a whole: :func:`representatives` groups the
documents by the embedding of their first chunk (k-means, at most :data:`MAX_TOPICS` groups)
and takes the document nearest each group's centre, largest group first. A collection of more
than :data:`SAMPLE` documents is grouped from a sample of that many, the same on every
replica (the lexical view's :meth:`sample`).

Either way the generator quotes one sentence per document (:func:`one_per_document`): the best
one for the question, or, for the collection, the sentence that introduces the document.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from citeqa.text import squashed, term_set, words
from service.answering.corpus import CorpusStats
from service.answering.question import DOCUMENT_NOUNS, Question

if TYPE_CHECKING:
    from service.answering.evidence import Candidate, Evidence
    from service.answering.lexical_views import Chunk

POOL = 100  # chunks taken from each search for a list question
MAX_LISTED = 10  # most documents a list answer names
KEEP = 0.5  # a listed document's evidence: this share of the way from the pool's median to the best
MAX_TOPICS = 5  # most groups of documents an overview of the collection describes
SAMPLE = 2000  # documents an overview of the collection is made from, at most (drawn by id)
NEARLY = 0.85  # a listed document's introducing sentence scores this share of its best one
_NOUN_TERMS = frozenset(term_set(DOCUMENT_NOUNS.replace("|", " ")))


# The verb after the documents' noun: "which papers *discuss* X", "which vignettes are *built*
# around X", "which documents *list* X as an author": it asks, it names no topic.
_ASKING_VERB = re.compile(
    rf"\b(?:{DOCUMENT_NOUNS})\s+(?:(?:are|is|were|was|do|does|did|have|has)\s+)?([\w\-]+)",
    re.IGNORECASE,
)


def topic_terms(question: Question) -> frozenset[str]:
    """The question's content terms that say what the documents are about: without the nouns
    naming documents nor the verb that asks for them ("which vignettes *use* ...")."""
    asking = _ASKING_VERB.search(question.text)
    verb = term_set(asking.group(1)) if asking else set()
    return question.terms - _NOUN_TERMS - verb


def rank_documents(
    question: Question,
    pool: Mapping[str, Chunk],
    sentence_cosine: Mapping[str, float],
    stats: CorpusStats,
    fused: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """The documents a list question asks for, best first: for each, the chunk to quote and
    the document's evidence. ``pool``: chunk id -> chunk, the union of the searches' results;
    ``sentence_cosine``: chunk id -> the best cosine of one of its sentences with the question
    (chunks whose sentences the sentence search did not return: absent); ``fused``: chunk ids
    in the order of the fused ranking a fact question reads. The chunk quoted is the
    document's first in ``fused`` (where the question is best answered), else its pooled chunk
    with the best evidence (best sentence cosine plus its share of the topic terms)."""
    rank = {cid: i for i, cid in enumerate(fused)}
    chunk_terms = _topic_terms_held(pool, topic_terms(question))
    held = set().union(*chunk_terms.values()) if chunk_terms else set()
    weights = {t: stats.weight(t) for t in held}
    total = sum(weights.values()) or 1.0

    def share(terms: set[str]) -> float:
        return sum(w for t, w in weights.items() if t in terms) / total

    by_doc: dict[str, list[str]] = {}
    for cid, chunk in pool.items():
        by_doc.setdefault(str(chunk.metadata.get("doc_id", cid)), []).append(cid)
    scored = []
    for cids in by_doc.values():
        cosine = max(sentence_cosine.get(cid, 0.0) for cid in cids)
        evidence = cosine + share(set().union(*(chunk_terms[cid] for cid in cids)))
        shown = min(
            cids,
            key=lambda cid: (
                rank.get(cid, len(rank)),
                -sentence_cosine.get(cid, 0.0) - share(chunk_terms[cid]),
                cid,
            ),
        )
        scored.append((evidence, shown))
    scored.sort(key=lambda s: (-s[0], s[1]))
    if not scored:
        return []
    best, median = scored[0][0], statistics.median(s for s, _ in scored)
    floor = median + KEEP * (best - median)
    return [(cid, score) for score, cid in scored[:MAX_LISTED] if score >= floor]


def _topic_terms_held(pool: Mapping[str, Chunk], topics: frozenset[str]) -> dict[str, set[str]]:
    """chunk id -> the topic terms it holds (as :func:`~citeqa.text.term_set` finds them).
    Only the distinct words of the pool that begin like a topic term are stemmed (a stem
    changes at most a word's last letter: "famili" of "family"), not each chunk's every word."""
    if not topics:
        return {cid: set() for cid in pool}
    tokens = {cid: set(words(chunk.text.lower())) for cid, chunk in pool.items()}
    starts = tuple(term[:-1] or term for term in topics)
    meaning: dict[str, set[str]] = {}
    for word in set().union(*tokens.values()):
        if any(part.startswith(starts) for part in word.split("-")):
            found = term_set(word) & topics
            if found:
                meaning[word] = found
    return {
        cid: set().union(*(meaning[w] for w in ws & meaning.keys())) for cid, ws in tokens.items()
    }


def representatives(vectors: np.ndarray, k: int = MAX_TOPICS, rounds: int = 10) -> list[int]:
    """Rows of ``vectors`` (one per document, L2-normalised) that stand for the collection:
    k-means with at most ``k`` groups (seeded deterministically: the row nearest the centroid,
    then each time the row farthest from those chosen), then the row nearest each group's
    centre, largest group first."""
    n = len(vectors)
    if n == 0:
        return []
    k = min(k, n)
    seeds = [int(np.argmax(vectors @ vectors.mean(axis=0)))]
    while len(seeds) < k:
        nearest = np.max(vectors @ vectors[seeds].T, axis=1)
        seeds.append(int(np.argmin(nearest)))
    centres = vectors[seeds]
    for _ in range(rounds):
        group = np.argmax(vectors @ centres.T, axis=1)
        members = [group == g for g in range(k)]
        centres = np.stack(
            [vectors[m].mean(axis=0) if m.any() else centres[g] for g, m in enumerate(members)]
        )
    group = np.argmax(vectors @ centres.T, axis=1)
    chosen = []
    for g in sorted(range(k), key=lambda g: (-int(np.sum(group == g)), g)):
        rows = np.flatnonzero(group == g)
        if len(rows):
            chosen.append(int(rows[np.argmax(vectors[rows] @ centres[g])]))
    return chosen


_INTRODUCES = re.compile(
    r"\b(?:we|this|the)\s+(?:\w+\s+){0,2}?(?:propose|proposes|present|presents|introduce|"
    r"introduces|describe|describes|gives|provides|explains|shows)\b",
    re.IGNORECASE,
)
MIN_WORDS = 6  # shorter "sentences" are headings, labels or code, not a description


def one_per_document(evidence: Evidence, best: Candidate) -> list[Candidate]:
    """For a question a list of documents answers ("which papers discuss X?"): one sentence
    of each retrieved document (retrieval chose the documents: :func:`rank_documents`), the
    one that introduces what the document presents ("we propose POVID ...": it names the
    document's own subject, which its title may not) when it scores nearly as well as the
    document's best, else its best. For the collection as a whole ("what is this corpus
    about?"): each document's sentence that introduces it ("This vignette describes ...",
    "we propose ..."), else the one closest to what its retrieved chunk is about (the mean of
    the chunk's sentence vectors); never a heading or the title again."""
    overview = evidence.question.about_collection
    ranked = sorted(
        evidence.candidates,
        key=(lambda c: _introduces(evidence, c)) if overview else (lambda c: (c.score,)),
        reverse=True,
    )
    by_doc: dict[str, list[Candidate]] = {}
    for cand in ranked:
        by_doc.setdefault(evidence.hits[cand.hit_index].doc_id, []).append(cand)
    if overview:
        return [own[0] for own in by_doc.values()][:MAX_LISTED]
    return [_naming(own) for own in by_doc.values()][:MAX_LISTED]


def _naming(own: list[Candidate]) -> Candidate:
    """Of a document's sentences, best first: the first that introduces what the document
    presents among those scoring at least :data:`NEARLY` of the best, else the best."""
    close = [c for c in own if c.score >= NEARLY * own[0].score]
    return next((c for c in close if _INTRODUCES.search(c.text)), own[0])


def _introduces(evidence: Evidence, cand: Candidate) -> tuple[bool, bool, float]:
    own = [c.vector for c in evidence.candidates if c.hit_index == cand.hit_index]
    centre = np.mean(own, axis=0) if own else cand.vector
    title = evidence.hits[cand.hit_index].title
    return (
        len(words(cand.text)) >= MIN_WORDS and squashed(cand.text) != squashed(title),
        bool(_INTRODUCES.search(cand.text)),
        float(cand.vector @ centre),
    )
