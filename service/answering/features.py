"""Features of how well the evidence answers the question, for the answerability model
(:mod:`service.answering.answerability`) and the refusal rules (:mod:`service.answering.refusal`).

* which retrieved documents mention the names of the question (:class:`NameMatch`), each
  name weighed by its IDF in the collection;
* numbers stated next to what the question asks about (:func:`numbers_next_to`);
* :func:`answerability_features`: the feature vector of the best candidate and its document.

Corpus statistics enter only relative to the collection's own (:class:`CorpusStats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from citeqa.text import names, numbers, term_set, words
from service.answering.corpus import CorpusStats
from service.answering.question import UNITS, Question, counted_in_words

if TYPE_CHECKING:
    from service.answering.evidence import Candidate, Evidence
    from service.answering.retrieval import Hit

# How few of the collection's documents mention a name that tells which document is meant
# ("rare": the question is about that document; "distinctive": it picks documents out).
RARE_SHARE = 0.02
DISTINCTIVE_SHARE = 0.05
COUNT_WINDOW = 5  # words either side of a number that may say what it counts
NUMBER_WINDOW = 6  # words either side of a number that may name what it counts


def document_texts(hits: list[Hit]) -> dict[str, str]:
    """doc id -> its title and the retrieved text of its chunks: what the sources say of it."""
    texts: dict[str, str] = {}
    for hit in hits:
        texts[hit.doc_id] = texts.get(hit.doc_id, hit.title) + "\n" + hit.body
    return texts


@dataclass
class NameMatch:
    """The names in a question ("TinyViT", "Kinetics-700") and which retrieved documents
    mention them (or a form the corpus defines for them: "GDPR" for "General Data Protection
    Regulation"). Each name weighs its IDF: one most documents share says little about which
    document is meant."""

    asked: list[str] = field(default_factory=list)
    weight: dict[str, float] = field(default_factory=dict)
    by_doc: dict[str, set[str]] = field(default_factory=dict)  # doc id -> names it mentions
    rare: set[str] = field(default_factory=set)  # at most RARE_SHARE of the documents
    distinctive_names: set[str] = field(default_factory=set)  # at most DISTINCTIVE_SHARE

    @classmethod
    def find(cls, question: Question, hits: list[Hit], stats: CorpusStats) -> NameMatch:
        asked = list(question.names)
        if not asked:
            return cls()
        by_doc = {}
        for doc_id, text in document_texts(hits).items():
            lowered = text.lower()
            by_doc[doc_id] = {n for n in asked if stats.mentions(lowered, n)}
        held = {n: stats.name_documents(n) for n in asked}
        few = max(1.0, RARE_SHARE * stats.documents)
        some = max(1.0, DISTINCTIVE_SHARE * stats.documents)
        return cls(
            asked,
            {n: stats.name_weight(n) for n in asked},
            by_doc,
            {n for n in asked if held[n] <= few},
            {n for n in asked if held[n] <= some},
        )

    def share(self, doc_id: str) -> float:
        """IDF-weighted share of the names that the document mentions (1.0 if none asked)."""
        if not self.asked:
            return 1.0
        found = self.by_doc.get(doc_id, set())
        # Summed in the question's order, as the total is: a set's order (the process's hash
        # seed) would make a document that mentions every name score 0.9999999999999999.
        return sum(self.weight[n] for n in self.asked if n in found) / sum(self.weight.values())

    def unmentioned(self) -> list[str]:
        """Names no retrieved text mentions."""
        seen = set().union(*self.by_doc.values()) if self.by_doc else set()
        return [n for n in self.asked if n not in seen]

    def rare_elsewhere(self, doc_id: str) -> bool:
        """:meth:`elsewhere`, for a rare name (few documents mention it) of a question about
        one subject: the names are not split between documents, as in "X of Apollo-7B and of
        LongVA-7B"."""
        if not self.asked or not self.elsewhere(doc_id):
            return False
        return bool(self.rare) and not self.split()

    def split(self) -> bool:
        """Two documents each mention a distinctive name the other does not: the question
        is about several documents."""
        distinctive = list(self.distinctive_by_doc().values())
        return any(a - b and b - a for a in distinctive for b in distinctive)

    def unconfirmed(self, doc_id: str) -> list[str]:
        """The distinctive names of the question the document does not mention: a yes/no
        question ("Does EASTER use CTC loss?") that its document cannot confirm."""
        found = self.by_doc.get(doc_id, set())
        return [n for n in self.asked if n in self.distinctive_names and n not in found]

    def distinctive(self) -> list[str]:
        """The distinctive (rare enough) names of the question."""
        return [n for n in self.asked if n in self.distinctive_names]

    def distinctive_by_doc(self) -> dict[str, set[str]]:
        """doc id -> the distinctive names of the question it mentions."""
        wanted = set(self.distinctive())
        return {doc: found & wanted for doc, found in self.by_doc.items()}

    def elsewhere(self, doc_id: str) -> bool:
        """The question's rarest name is missing from this document but another mentions it:
        an answer from this document would be about some other document."""
        if not self.asked:
            return False
        rarest = max(self.asked, key=lambda n: self.weight[n])
        others = (found for d, found in self.by_doc.items() if d != doc_id)
        return rarest not in self.by_doc.get(doc_id, set()) and any(rarest in f for f in others)


def numbers_next_to(terms: AbstractSet[str], text: str, window: int = COUNT_WINDOW) -> bool:
    """Whether ``text`` states a number within ``window`` words of one of the (stemmed)
    terms."""
    return any(terms & term_set(near) for _, _, near in number_windows(text, window))


def number_windows(text: str, window: int) -> Iterator[tuple[set[str], str, str]]:
    """Each word of ``text`` that states numbers: the numbers, the word ("671B", "one", or a
    name like "GLM-130B") and the text of the ``window`` words either side of it."""
    tokens = words(text)
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        stated = numbers(token) or counted_in_words(token, following)
        if stated:
            yield stated, token, " ".join(tokens[max(0, i - window) : i + window + 1])


def counts_stated(things: list[str], text: str) -> bool:
    """Whether ``text`` states a number within a few words of one of the counted things
    ("6,000 TPU chips", "chips: 6,000"); True when nothing is counted."""
    return not things or any(
        numbers_next_to(term_set(t, drop_question_words=True), text) for t in things
    )


# Measures any number can state ("how much data", "what fraction"): no word to look for.
_GENERIC_MEASURES = term_set(
    "data amount number value size fraction share ratio percentage percent proportion score "
    "accuracy performance speed speedup improvement gain boost cost compute time memory factor "
    "rate result results"
)


def focus_terms(focus: str) -> set[str]:
    """The terms of the asked focus that say what a number measures ("TPU chips"), generic
    measures ("accuracy", "speedup") aside."""
    return term_set(focus, drop_question_words=True) - _GENERIC_MEASURES


def stated_values(evidence: Evidence, text: str) -> set[str]:
    """The numbers ``text`` states within a few words of a term of the asked focus: its
    answer to "how many parameters" ("671B total parameters" -> {"671"}). The digits of a
    name ("GLM-130B") are no value."""
    terms = focus_terms(evidence.focus)
    windows = number_windows(text, NUMBER_WINDOW)
    return set().union(
        *(s for s, word, near in windows if not names(word) and terms & term_set(near))
    )


def number_near_focus(evidence: Evidence, sentences: list[Candidate]) -> bool:
    """Some sentence states a number within a few words of a term of the asked focus ("128
    TPU chips" for "how many TPU chips"); True when the focus has no content terms but
    generic measures."""
    terms = focus_terms(evidence.focus)
    if not terms:
        return True
    return any(numbers_next_to(terms, c.text, NUMBER_WINDOW) for c in sentences)


def number_bound(sentence: str, detail_terms: AbstractSet[str], unit: str) -> bool:
    """The sentence states the asked number: one in the unit asked for ("how long did it
    take": hours, not any number near "train"), else one next to a term of the asked detail."""
    if unit:
        return bool(UNITS[unit].search(sentence))
    return bool(detail_terms) and numbers_next_to(detail_terms, sentence)


def answerability_features(evidence: Evidence) -> dict[str, float]:
    """Features of how well the evidence answers the question: similarities (cosines of the
    question and the best sentence, the best chunk, the asked focus), IDF-weighted shares of
    the question found (coverage, detail, in the document), names missing or found in
    another document, a number missing where one is asked."""
    best = evidence.best()
    assert best is not None
    total = sum(evidence.term_weights.values()) or 1.0
    same_doc = [
        c
        for c in evidence.candidates
        if evidence.hits[c.hit_index].doc_id == evidence.hits[best.hit_index].doc_id
    ]
    doc_terms = frozenset().union(*(c.matched for c in same_doc))
    unmentioned = bool(evidence.names.unmentioned())
    single_subject = not evidence.question.asks_several and not evidence.names.split()
    return {
        "names_missing_all": float(unmentioned),
        "names_elsewhere": float(
            evidence.names.elsewhere(evidence.hits[best.hit_index].doc_id) and single_subject
        ),
        "names_apart": float(
            max(c.names_found for c in evidence.candidates) < 1.0
            and not unmentioned
            and single_subject
        ),
        "number_unrelated": float(
            evidence.question.expects_number and not number_near_focus(evidence, same_doc)
        ),
        "similarity": best.similarity,
        "max_similarity": max(c.similarity for c in evidence.candidates),
        "coverage": best.coverage,
        "detail": best.detail,
        "doc_coverage": sum(evidence.term_weights[t] for t in doc_terms) / total,
        "chunk_similarity": evidence.hits[0].dense,
        "number_missing": float(evidence.question.expects_number and not best.has_number),
        "focus_similarity": evidence.focus_similarity,
        "focus_coverage": evidence.focus_coverage,
        "focus_head_found": evidence.focus_head_found,
        "best_detail_any": max(c.detail for c in same_doc),
        "max_idf_missing": evidence.stats.relative_idf(
            max([w for t, w in evidence.term_weights.items() if t not in doc_terms], default=0.0)
        ),
    }
