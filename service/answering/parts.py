"""The parts of a question that asks several things at once, and the sentence that answers
each.

"What strategy does p-MoD use to set the token retention ratio, and what metric does gamma-MoD
use to decide which layers to convert?" asks two questions; "What is stochastic depth and why
does it help?" too. Scored against the whole question, the best sentences answer the part with
the most (or the rarest) words, often twice, and leave the other part unanswered.

:func:`question_parts` splits the question where English joins questions: at the end of a
sentence or clause (".", "?", ";", ":") and at an "and" that opens another question ("..., and
what ...", "... and why ..."). A piece that asks nothing ("p-MoD and gamma-MoD both bring
mixture-of-depths to multimodal LLMs.", "Compare A and B:") is context, not a part.

:func:`part_answers` gives each part its best sentence: from the documents about the
distinctive names the part mentions (the paper whose title names it, else those that mention
it), or, for a part that names nothing ("why does it help?"), from the documents the answer
already quotes (its subject is theirs: no other paper is brought in). Within them, a sentence
answers the part that states most of the part's *own* terms (those no other part has, and no
name of it: what tells the part apart from the rest of the question), among those that score
well enough overall to be an answer at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from citeqa.text import mentions, term_set
from service.answering.evidence import Candidate, Evidence, weighted_share
from service.answering.question import DOCUMENT_NOUNS, asked_names, focus_phrase, question_word

_ASKING = r"what|which|how|why|who|whom|whose|when|where|does|do|did|is|are|was|were|can|has|have"
# Where one question ends and another may begin: after a sentence or clause ends, or at an
# "and" followed by a question word ("..., and what ...", "... and why does ...").
_BOUNDARY = re.compile(rf"(?<=[.;:?!])\s+|,?\s+and\s+(?=(?:{_ASKING})\b)", re.IGNORECASE)
_LEADING_AND = re.compile(r"^and\s+", re.IGNORECASE)
# A piece that asks: it opens with a question word or an auxiliary ("why does it help?", "Is
# it ...?"), or has a wh-word that is not a relative pronoun ("On which dataset ...?").
_ASKS = re.compile(rf"(?:{_ASKING})\b", re.IGNORECASE)


_SINGULARS = "|".join(
    n[:-3] + "y" if n.endswith("ies") else n[:-1] for n in DOCUMENT_NOUNS.split("|")
)
# "the competing risks vignette", "the JSS lme4 paper": words that say which document, not
# what is asked of it.
_DOCUMENT_NAMED = re.compile(
    rf"\b(?:the|that|this|its|their)\s+((?:[\w\-'.]+\s+){{0,4}}?)(?:{_SINGULARS}|{DOCUMENT_NOUNS})\b",
    re.IGNORECASE,
)
DESCRIBED = 0.5  # a title holding this (IDF-weighted) share of a description is the one meant


@dataclass(frozen=True)
class Part:
    """One question of several: its text and what it asks apart from the others (its own
    terms, see :func:`question_parts`)."""

    text: str
    own: frozenset[str]


def question_parts(text: str) -> list[Part]:
    """The questions ``text`` joins, in order; [] when it asks one thing. A part's own terms
    are its content terms that no other part has and that no name of it holds, nor a phrase
    naming a document ("the competing risks vignette"): the names choose the documents, not
    the sentence. All of its terms but those when every one is shared."""
    pieces = [_LEADING_AND.sub("", p.strip(" ,;:")) for p in _BOUNDARY.split(text)]
    asking = [p for p in pieces if p and (_ASKS.match(p) or question_word(p))]
    if len(asking) < 2:
        return []
    terms = [frozenset(term_set(p, drop_question_words=True)) for p in asking]
    parts = []
    for i, (piece, mine) in enumerate(zip(asking, terms, strict=True)):
        others = frozenset().union(*(t for j, t in enumerate(terms) if j != i))
        named = frozenset(term_set(" ".join([*asked_names(piece), *_documents_named(piece)])))
        parts.append(Part(piece, (mine - others - named) or (mine - named) or mine))
    return parts


def _documents_named(piece: str) -> list[str]:
    """The words of ``piece`` that name a document: "the competing risks vignette"."""
    return [m.group(0) for m in _DOCUMENT_NAMED.finditer(piece)]


def part_answers(evidence: Evidence, chosen: list[Candidate], floor: float) -> list[Candidate]:
    """For a question of several parts, each part's answer when no chosen sentence is it:
    of the sentences of the part's documents (:func:`_part_pool`) that score at least
    ``floor`` of the best of them, the one stating the largest (IDF-weighted) share of the
    part's own terms, the better scoring of those that state as much. Terms of the title of
    one of those documents are left out when others remain, unless the part asks for them
    (its focus, "what small *ranker*"): they say which document is meant ("... in the
    competing risks vignette"), not what is asked of it."""
    added: list[Candidate] = []
    for part in question_parts(evidence.question.text):
        pool = _part_pool(evidence, part, chosen + added)
        titles = set().union(*(term_set(evidence.hits[c.hit_index].title) for c in pool))
        where = titles - term_set(focus_phrase(part.text))  # "in the competing risks vignette"
        asked = (part.own - where) or part.own
        top = max((c.score for c in pool), default=0.0)
        plausible = [c for c in pool if c.score >= floor * top]
        pick = max(plausible, key=lambda c: (_states(evidence, asked, c), c.score), default=None)
        if pick is not None and pick not in chosen + added:
            added.append(pick)
    return added


def _states(evidence: Evidence, asked: frozenset[str], cand: Candidate) -> float:
    return weighted_share(evidence.stats, asked, term_set(cand.text))


def _part_pool(evidence: Evidence, part: Part, chosen: list[Candidate]) -> list[Candidate]:
    """The candidates that may answer ``part``: those of the documents it describes
    (:func:`described_documents`) and of the documents about the distinctive names it
    mentions (the ones whose title names one, else those that mention one), else, when it
    names nothing, those of the documents already quoted."""
    hits = evidence.hits
    lowered = part.text.lower()
    named = [n for n in evidence.names.distinctive() if mentions(lowered, n)]
    docs = described_documents(evidence, part.text)
    if named:
        titled = {
            h.doc_id
            for h in hits
            if any(evidence.stats.mentions(own_name(h.title), n) for n in named)
        }
        by_doc = evidence.names.distinctive_by_doc()
        docs |= titled or {d for d, found in by_doc.items() if found & set(named)}
    if not docs:
        docs = {hits[c.hit_index].doc_id for c in chosen}
    return [c for c in evidence.candidates if hits[c.hit_index].doc_id in docs]


def described_documents(evidence: Evidence, text: str) -> set[str]:
    """The retrieved documents ``text`` describes rather than names: "the stochastic depth
    paper", "the competing risks vignette", "that baseline's 'improved baselines' paper".
    For each such description, the document whose title holds the largest (IDF-weighted)
    share of its terms, at least :data:`DESCRIBED` of them, when no other holds as much."""
    titles = {hit.doc_id: term_set(hit.title) for hit in evidence.hits}
    found: set[str] = set()
    for match in _DOCUMENT_NAMED.finditer(text):
        terms = term_set(match.group(1))
        shares = sorted(
            ((evidence.weighted_share(terms, held), doc) for doc, held in titles.items()),
            reverse=True,
        )
        if not shares or shares[0][0] < DESCRIBED:
            continue
        if len(shares) == 1 or shares[1][0] < shares[0][0]:
            found.add(shares[0][1])
    return found


def own_name(title: str) -> str:
    """The part of a title that names the paper's own subject: before its colon ("MLVU" of
    "MLVU: A Comprehensive Benchmark ..."), else the whole title; lower case."""
    return title.split(":", 1)[0].lower()
