"""Evidence: the candidate sentences of the retrieved chunks, scored against the question.

Both generators start from the same :class:`Evidence`. Each candidate sentence gets features
that say how well it *answers* the question, not just how close it is to it:

* ``similarity``: cosine of question and sentence embeddings (paraphrases);
* ``coverage``: IDF-weighted share of the question's content terms found in the sentence or its
  document title (the named subject);
* ``detail``: IDF-weighted share of the question's terms that are *not* in the title (the asked
  detail: "learning rate", "how many GPUs") found in the sentence. A near-miss question names a
  paper that is in the corpus but asks a detail its text never mentions: coverage is high
  thanks to the title, detail is low;
* ``expects_number`` / ``has_number``: "how many", "what percentage" need a number;
* ``names_found``: the IDF-weighted share of the names in the question ("TinyViT", "GPUs")
  that the sentence's paper mentions (:class:`NameMatch`).

``answerability`` is a logistic function of features of the best candidate and its paper (the
above, the asked focus, names no source mentions, an answer from a paper without the rarest
name, no number near the asked focus). Its weights are fit by ``evals/calibrate.py`` on the
whole development set plus generated near-miss questions (``evals/nearmiss.py``) and kept in
:data:`ANSWERABILITY_WEIGHTS`.

Some refusals are rules instead (:attr:`Evidence.ruled_out`): answers of a fixed form
(:func:`missing_answer_type`: a year, authors, a license, a count next to what is counted, a
name for "which GPU", a number in the unit asked for), a name no document of the corpus
mentions (:meth:`HybridRetriever.unknown_names`), and an answer from a paper without the
question's rare name (:meth:`NameMatch.rare_elsewhere`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from chromadb.api.types import Where

from citeqa.store import Index
from citeqa.text import (
    mentions,
    name_keys,
    name_weight,
    names,
    numbers,
    sentence_spans,
    squashed,
    stopwords,
    term_set,
    words,
)
from service.retrieval import Hit, HybridRetriever, Retrieval

_NUMERIC_Q = re.compile(
    r"\b(how (many|much|large|big|long|fast|deep|high|small|far|well|quickly)|percentage|percent|"
    r"fraction|proportion|number of|accuracy|error|score|speed ?up|factor|improvement|gain|"
    r"reduction|increase|decrease|faster|cheaper|smaller|fewer|top-1|top-5|pass@\w+|\bsizes?\b|"
    r"throughput|latency|cost|rate|coefficient|ratio|resolution|temperature|epochs?|steps|"
    r"dimensions?|hours|days)\b",
    re.IGNORECASE,
)

_WH_RE = re.compile(r"\b(what|which|how many|how much|who|whom|whose)\b", re.IGNORECASE)
_PREPOSITIONS = frozenset(["in", "of", "for", "by", "on", "at", "with", "from", "to", "under"])


def _question_word(question: str) -> re.Match[str] | None:
    """The first wh-word that asks, not one that opens a relative clause ("the LLM in which
    every layer keeps ...", but "On which dataset ...?" asks)."""
    for match in _WH_RE.finditer(question):
        before = question[: match.start()].split()
        relative = (
            len(before) >= 2
            and before[-1].lower() in _PREPOSITIONS
            and not before[-2].endswith((",", ":", ";"))
        )
        if not relative:
            return match
    return None


_SKIP_AFTER_WH = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "does",
        "do",
        "did",
        "has",
        "have",
        "had",
        "the",
        "a",
        "an",
        "of",
        "kind",
        "type",
        "sort",
        "exact",
        "total",
    ]
)


def focus_phrase(question: str) -> str:
    """The thing asked for: the words after the first wh-word ("What peak learning rate was
    used..." -> "peak learning rate"; "Who are the authors of..." -> "authors"), or ""."""
    match = _question_word(question)
    if not match:
        return ""
    stop = stopwords()
    focus: list[str] = []
    for word in question[match.end() :].split():
        token = word.strip("?,.;:()\"'").lower()
        if not focus and token in _SKIP_AFTER_WH:
            continue
        if not token or token in stop or len(focus) == 4:
            break
        focus.append(word.strip("?,.;:()\"'"))
    return " ".join(focus)


# Fit by evals/calibrate.py on the development set; see the module docstring.
ANSWERABILITY_WEIGHTS: dict[str, float] = {
    "bias": -2.26,
    "names_missing_all": -0.948,
    "names_elsewhere": -0.653,
    "names_apart": -0.303,
    "number_unrelated": -0.977,
    "similarity": 0.874,
    "max_similarity": 0.852,
    "coverage": -0.586,
    "detail": 0.43,
    "doc_coverage": 0.28,
    "chunk_similarity": 1.221,
    "number_missing": -1.033,
    "focus_similarity": 0.408,
    "focus_coverage": 0.851,
    "focus_head_found": 0.104,
    "best_detail_any": 0.641,
    "max_idf_missing": 0.28,
}
ANSWERABILITY_THRESHOLD = 0.2756


@dataclass
class Candidate:
    """One sentence of a retrieved chunk, with its features."""

    hit_index: int  # position in Evidence.hits (citation number - 1)
    position: int  # sentence number inside the chunk
    text: str
    start: int  # character offsets in the document
    end: int
    similarity: float
    coverage: float
    detail: float
    has_number: bool
    matched: frozenset[str] = frozenset()  # question terms found in the sentence or title
    vector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32), repr=False)
    names_found: float = 1.0  # share of the names in the question that its document mentions
    number_bound: bool = False  # states a number next to a term of the asked detail
    score: float = 0.0


@dataclass
class Evidence:
    question: str
    hits: list[Hit]
    candidates: list[Candidate]
    expects_number: bool
    term_weights: dict[str, float] = field(default_factory=dict)  # question term -> IDF
    focus: str = ""
    focus_similarity: float = 0.0  # best cosine of the focus phrase and a top-document sentence
    focus_coverage: float = 1.0  # share of focus terms found in the top document
    focus_head_found: float = 1.0  # the focus phrase's last (head) word is in the top document
    names: NameMatch = field(default_factory=lambda: NameMatch())
    answerability: float = 0.0
    features: dict[str, float] = field(default_factory=dict)

    unknown_names: list[str] = field(default_factory=list)  # names no document mentions
    # Why a rule refuses: the question asks for a "number", "year", "authors", "license",
    # "name" or "unit" the evidence does not state (:func:`missing_answer_type`), or the answer
    # would be about another "subject" than the question's names.
    missing_answer_type: str = ""

    @property
    def answerable(self) -> bool:
        return self.answerability >= ANSWERABILITY_THRESHOLD and not self.ruled_out

    @property
    def ruled_out(self) -> bool:
        """Refused by a rule, whatever the model says: a missing answer type, another subject,
        or a name the corpus never mentions."""
        return bool(self.missing_answer_type or self.unknown_names)

    def best(self) -> Candidate | None:
        return max(self.candidates, key=lambda c: c.score, default=None)


class EvidenceBuilder:
    """Loads the sentences of retrieved chunks and scores them."""

    def __init__(self, index: Index, retriever: HybridRetriever) -> None:
        self.index = index
        self.retriever = retriever
        self.idf: dict[str, float] = {}
        self.default_idf = 1.0

    def build(self, retrieval: Retrieval) -> Evidence:
        question = retrieval.question
        self.idf, self.default_idf = self.retriever.idf()
        q_terms = term_set(question, drop_question_words=True)
        expects_number = bool(_NUMERIC_Q.search(question))
        unit = asked_unit(question)
        candidates = self._candidates(retrieval, q_terms, unit)
        subject = defined_subject(question)
        named = NameMatch.find(
            question, retrieval.hits, lambda n: name_weight(n, self.idf, self.default_idf)
        )
        for cand in candidates:
            cand.names_found = named.share(retrieval.hits[cand.hit_index].doc_id)
            cand.score = _sentence_score(cand, expects_number)
            if subject and _defines(cand.text, subject):
                cand.score += DEFINITION_BONUS
        weights = {t: self.idf.get(t, self.default_idf) for t in q_terms}
        evidence = Evidence(question, retrieval.hits, candidates, expects_number, weights)
        evidence.names = named
        evidence.unknown_names = self.retriever.unknown_names(question)
        self._score_focus(evidence)
        self._score_answerability(evidence)
        return evidence

    def _candidates(self, retrieval: Retrieval, q_terms: set[str], unit: str) -> list[Candidate]:
        hits = retrieval.hits
        if not hits:
            return []
        where: Where = {"chunk_id": {"$in": [h.chunk_id for h in hits]}}  # type: ignore[dict-item]
        got = self.index.sentences.get(
            where=where,
            include=["documents", "metadatas", "embeddings"],
        )
        position = {h.chunk_id: i for i, h in enumerate(hits)}
        vectors = np.asarray(got["embeddings"], dtype=np.float32).reshape(
            -1, len(retrieval.query_vector)
        )
        sims = vectors @ retrieval.query_vector if len(vectors) else np.zeros(0)
        out: list[Candidate] = []
        for text, meta, sim in zip(
            got["documents"] or [], got["metadatas"] or [], sims, strict=True
        ):
            hit_index = position[str(meta["chunk_id"])]
            title_terms = term_set(hits[hit_index].title)
            cand = self._candidate(hit_index, meta, text, float(sim), q_terms, title_terms, unit)
            cand.vector = vectors[len(out)]
            out.append(cand)
        out.sort(key=lambda c: (c.hit_index, c.position))
        return out

    def _candidate(
        self,
        hit_index: int,
        meta: Mapping[str, Any],
        text: str,
        sim: float,
        q_terms: set[str],
        title_terms: set[str],
        unit: str,
    ) -> Candidate:
        s_terms = term_set(text)
        detail_terms = q_terms - title_terms
        return Candidate(
            number_bound=_number_bound(text, detail_terms, unit),
            hit_index=hit_index,
            position=int(meta["position"]),
            text=text,
            start=int(meta["start"]),
            end=int(meta["end"]),
            similarity=sim,
            coverage=self._weighted_share(q_terms, s_terms | title_terms),
            detail=self._weighted_share(detail_terms, s_terms) if detail_terms else 1.0,
            has_number=bool(numbers(text)),
            matched=frozenset(q_terms & (s_terms | title_terms)),
        )

    def _weighted_share(self, wanted: set[str], found: set[str]) -> float:
        if not wanted:
            return 0.0
        total = sum(self.idf.get(t, self.default_idf) for t in wanted)
        hit = sum(self.idf.get(t, self.default_idf) for t in wanted & found)
        return hit / total if total else 0.0

    def _score_focus(self, evidence: Evidence) -> None:
        best = evidence.best()
        if best is None:
            return
        title = evidence.hits[best.hit_index].title
        # Without a wh-phrase ("How does X work?") the asked detail is what the title lacks.
        title_terms = term_set(title)
        fallback = [w for w in words(evidence.question) if not term_set(w) <= title_terms]
        evidence.focus = (
            defined_subject(evidence.question)
            or focus_phrase(evidence.question)
            or " ".join(fallback)
        )
        focus_terms = term_set(evidence.focus, drop_question_words=True)
        if not focus_terms:
            evidence.focus_similarity, evidence.focus_coverage = best.similarity, 1.0
            return
        doc_id = evidence.hits[best.hit_index].doc_id
        same_doc = [c for c in evidence.candidates if evidence.hits[c.hit_index].doc_id == doc_id]
        vector = self.retriever.embedder.embed([evidence.focus])[0]
        evidence.focus_similarity = max(float(c.vector @ vector) for c in same_doc)
        doc_terms = title_terms.union(*(term_set(c.text) for c in same_doc))
        evidence.focus_coverage = self._weighted_share(focus_terms, doc_terms)
        head = term_set(evidence.focus.split()[-1], drop_question_words=True)
        evidence.focus_head_found = float(head <= doc_terms)

    def _score_answerability(self, evidence: Evidence) -> None:
        best = evidence.best()
        if best is None:
            evidence.answerability = 0.0
            return
        doc_id = evidence.hits[best.hit_index].doc_id
        texts = document_texts(evidence.hits)
        evidence.missing_answer_type = missing_answer_type(
            evidence.question, texts[doc_id], best.text, "\n".join(texts.values())
        )
        if not asks_several(evidence.question) and evidence.names.rare_elsewhere(doc_id):
            evidence.missing_answer_type = evidence.missing_answer_type or "subject"
        if _YES_NO_Q.match(evidence.question) and evidence.names.unconfirmed(doc_id):
            evidence.missing_answer_type = evidence.missing_answer_type or "subject"
        evidence.features = answerability_features(evidence)
        evidence.answerability = answerability(evidence.features)


def answerability(features: dict[str, float]) -> float:
    """Logistic model over the features, with :data:`ANSWERABILITY_WEIGHTS`."""
    z = ANSWERABILITY_WEIGHTS["bias"] + sum(
        ANSWERABILITY_WEIGHTS[name] * value for name, value in features.items()
    )
    return 1.0 / (1.0 + math.exp(-z))


def answerability_features(evidence: Evidence) -> dict[str, float]:
    """Features of how well the evidence answers the question (see the module docstring)."""
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
    single_subject = not asks_several(evidence.question) and not evidence.names.split()
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
            evidence.expects_number and not _number_near_focus(evidence, same_doc)
        ),
        "similarity": best.similarity,
        "max_similarity": max(c.similarity for c in evidence.candidates),
        "coverage": best.coverage,
        "detail": best.detail,
        "doc_coverage": sum(evidence.term_weights[t] for t in doc_terms) / total,
        "chunk_similarity": evidence.hits[0].dense,
        "number_missing": float(evidence.expects_number and not best.has_number),
        "focus_similarity": evidence.focus_similarity,
        "focus_coverage": evidence.focus_coverage,
        "focus_head_found": evidence.focus_head_found,
        "best_detail_any": max(c.detail for c in same_doc),
        "max_idf_missing": max(
            [w for t, w in evidence.term_weights.items() if t not in doc_terms], default=0.0
        )
        / 10,
    }


_DEFINITION_Q = re.compile(
    r"^\s*(?:what(?: is|'s| are)|describe|explain|tell me about|what does)\s+(?:the\s+)?"
    r"(?P<subject>[\w\-\.\^ ]{1,60}?)(?:\s+(?:do|does|mean|model|method|paper))?\s*\??\s*$",
    re.IGNORECASE,
)
_DEFINING_VERB = re.compile(
    r"\b(propose|proposes|present|presents|introduce|introduces|called|named|dubbed|termed)\b",
    re.IGNORECASE,
)
DEFINITION_BONUS = 0.5


def defined_subject(question: str) -> str:
    """The X of "What is X?" (short subjects only), else ""."""
    match = _DEFINITION_Q.match(question)
    if not match or len(match.group("subject").split()) > 5:
        return ""
    return match.group("subject").strip()


def _defines(sentence: str, subject: str) -> bool:
    """The sentence introduces the subject ("we propose FastV, ...")."""
    lowered, name = sentence.lower(), subject.lower()
    if name not in lowered:
        return False
    copula = re.search(rf"{re.escape(name)}\s*(?:\([^)]*\)\s*)?(?:is|are)\s+an?\b", lowered)
    return bool(_DEFINING_VERB.search(sentence) or copula)


def document_texts(hits: list[Hit]) -> dict[str, str]:
    """doc id -> its title and the retrieved text of its chunks: what the sources say of it."""
    texts: dict[str, str] = {}
    for hit in hits:
        texts[hit.doc_id] = texts.get(hit.doc_id, hit.title) + "\n" + hit.body
    return texts


_YES_NO_Q = re.compile(r"\s*(?:does|did|do|is|are|was|were|can|has|have)\b", re.IGNORECASE)
RARE_NAME = 4.5  # IDF of a name that only a few documents mention (the bundled corpus: <= 3)
DISTINCTIVE_NAME = 3.5


@dataclass
class NameMatch:
    """The names in a question ("TinyViT", "Kinetics-700") and which retrieved documents
    mention them. Each name weighs its IDF: one most papers share, like "GPUs", says little
    about which paper is meant."""

    asked: list[str] = field(default_factory=list)
    weight: dict[str, float] = field(default_factory=dict)
    by_doc: dict[str, set[str]] = field(default_factory=dict)  # doc id -> names it mentions

    @classmethod
    def find(cls, question: str, hits: list[Hit], weight: Callable[[str], float]) -> NameMatch:
        asked = list(dict.fromkeys(names(question)))
        if not asked:
            return cls()
        by_doc = {}
        for doc_id, text in document_texts(hits).items():
            lowered = text.lower()
            by_doc[doc_id] = {n for n in asked if mentions(lowered, n)}
        return cls(asked, {n: weight(n) for n in asked}, by_doc)

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
        """:meth:`elsewhere`, for a rare name (few papers mention it) of a question about one
        subject: the names are not split between papers, as in "X of Apollo-7B and of
        LongVA-7B"."""
        if not self.asked or not self.elsewhere(doc_id):
            return False
        return max(self.weight.values()) >= RARE_NAME and not self.split()

    def split(self) -> bool:
        """Two documents each mention a distinctive name the other does not: the question
        is about several papers."""
        distinctive = list(self.distinctive_by_doc().values())
        return any(a - b and b - a for a in distinctive for b in distinctive)

    def unconfirmed(self, doc_id: str) -> list[str]:
        """The distinctive names of the question the document does not mention: a yes/no
        question ("Does EASTER use CTC loss?") that its paper cannot confirm."""
        found = self.by_doc.get(doc_id, set())
        return [n for n in self.asked if self.weight[n] >= DISTINCTIVE_NAME and n not in found]

    def distinctive_by_doc(self) -> dict[str, set[str]]:
        """doc id -> the distinctive (rare enough) names of the question it mentions."""
        return {
            doc: {n for n in found if self.weight[n] >= DISTINCTIVE_NAME}
            for doc, found in self.by_doc.items()
        }

    def elsewhere(self, doc_id: str) -> bool:
        """The question's rarest name is missing from this document but another mentions it:
        an answer from this document would be about some other paper."""
        if not self.asked:
            return False
        rarest = max(self.asked, key=lambda n: self.weight[n])
        others = (found for d, found in self.by_doc.items() if d != doc_id)
        return rarest not in self.by_doc.get(doc_id, set()) and any(rarest in f for f in others)


_YEAR_Q = re.compile(
    r"\b(?:(?:what|which) year|when (?:was|were|did)\b.*\b(?:publish|releas|introduc|propos|"
    r"present|written|appear))",
    re.IGNORECASE,
)
# Asks who wrote it ("Who are the authors of X?"), not what "the X authors built".
_AUTHORS_Q = re.compile(
    r"\b(?:authors? of|authored|who (?:wrote|write|writes)|written by|(?:who|name|list) "
    r"(?:are |were )?the authors|the authors are)\b",
    re.IGNORECASE,
)
_LICENSE_Q = re.compile(r"\blicen[cs](?:e|ed|es|ing)\b", re.IGNORECASE)
_LICENSE_EVIDENCE = re.compile(
    r"\b(?:licen[cs]e[ds]?|MIT|Apache|GPL|LGPL|BSD|Creative Commons|CC[- ]BY|public domain)\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_AUTHOR_EVIDENCE = re.compile(r"\b(?:authors?|authored|et al\b|written by)", re.IGNORECASE)


_COUNT_Q = re.compile(r"\bhow (?:many|much)\b", re.IGNORECASE)
# "how many attention heads in total were ..." -> "attention heads": up to six words after
# "how many" or a question's "(what is the) number of", ending before a verb, a preposition or
# punctuation. "How many times" is a ratio; "because the number of entries shrinks" asks
# nothing.
_COUNTED = re.compile(
    r"(?:\bhow many|(?:\b(?:what|which)(?:'s|\s+is|\s+was|\s+are|\s+were)?\s+(?:the\s+)?"
    r"(?:(?:total|maximum|minimum|exact|average)\s+)?|^\s*|:\s*)number of)\s+"
    r"(?!times\b|of\b|the\b)"
    r"(?P<thing>(?:[\w\-/]+\s+){0,5}?[\w\-/]+?)"
    r"(?=\s+(?:were|was|did|does|do|are|is|in|of|for|and|to|per|has|have|had|can|could|would|"
    r"will|on|at|with|from|by|used|trained|required|needed|evaluated|collected|generated)\b"
    r"|\s*[,?;.]|\s*$)",
    re.IGNORECASE,
)
COUNT_WINDOW = 5  # words either side of a number that may say what it counts


def counted_things(question: str) -> list[str]:
    """What each "how many" (or "number of") of the question counts: "How many TPU chips
    were used ..." -> ["TPU chips"]; "DeepNet: number of warmup steps?" -> ["warmup steps"]."""
    return [m.group("thing") for m in _COUNTED.finditer(question)]


def counts_stated(things: list[str], text: str) -> bool:
    """Whether ``text`` states a number within a few words of one of the counted things
    ("6,000 TPU chips", "chips: 6,000"); True when nothing is counted."""
    return not things or any(
        numbers_next_to(term_set(t, drop_question_words=True), text) for t in things
    )


def numbers_next_to(terms: set[str], text: str, window: int = COUNT_WINDOW) -> bool:
    """Whether ``text`` states a number within ``window`` words of one of the (stemmed)
    terms."""
    return any(terms & term_set(near) for _, _, near in number_windows(text, window))


def number_windows(text: str, window: int) -> Iterator[tuple[set[str], str, str]]:
    """Each word of ``text`` that states numbers: the numbers, the word ("671B", or a name
    like "GLM-130B") and the text of the ``window`` words either side of it."""
    tokens = words(text)
    for i, token in enumerate(tokens):
        stated = numbers(token)
        if stated:
            yield stated, token, " ".join(tokens[max(0, i - window) : i + window + 1])


# "Which GPU ...", "what LLM backbone ...": kinds of things that are answered by a name.
_NAMED_KIND_Q = re.compile(
    r"\b(?:which|what)\s+(?:(?!(?:is|are|was|were|does|do|did|has|have|had)\b)[\w\-]+\s+){0,3}?"
    r"(?P<kind>backbone|GPU|CPU|hardware|framework|librar(?:y|ie)|toolkit|optimi[sz]er|solver|"
    r"(?:V|M)?LLM|V?LMM|VLM|language model|conference|venue|compan(?:y|ie)|organi[sz]ation|"
    r"institution|programming language|tokeni[sz]er|platform)s?\b",
    re.IGNORECASE,
)
# "Which method performed best?", "which of the models scored highest": a name answers it.
_BEST_ONE_Q = re.compile(
    r"\bwhich\b(?:\s+[\w\-]+){0,6}?\s+(?:performed|performs|scored|scores|achieved|achieves|"
    r"obtained|obtains|was|is|ranked|ranks|did)\s+(?:the\s+)?(?:best|highest|top|strongest|"
    r"lowest|first)\b",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+")
# Kinds whose name stands right next to the word ("8 RTX 3090 GPUs"), in any sentence; an
# LLM or a backbone is named all over an abstract, so for those only the best sentence counts.
_NAMED_NEARBY = frozenset(["gpu", "cpu", "hardware", "platform"])


_KIND_OF_THING = re.compile(r"[A-Z]{2,}s")  # "LLMs", "GPUs": kinds of things, not names


def names_new(question: str, sentence: str) -> list[str]:
    """The names of ``sentence`` that the question does not already name ("LLM-like" is
    named by "LLM"), kinds of things ("LMMs") aside."""
    asked = {k for n in names(question) for k in [squashed(n), *name_keys(n)]}
    return [
        n
        for n in names(_URL.sub(" ", sentence))
        if not _KIND_OF_THING.fullmatch(n) and not {squashed(n), *name_keys(n)} & asked
    ]


def _names_an_answer(question: str, document: str, best_sentence: str) -> bool:
    """For "which GPU ..." (a kind answered by a name) or "which method performed best": the
    best sentence, or for hardware the words around that kind anywhere in the document ("...
    on 8 RTX 3090 GPUs"), name something the question does not. True for other questions."""
    kind = _NAMED_KIND_Q.search(question)
    if not kind and not _BEST_ONE_Q.search(question):
        return True
    if names_new(question, best_sentence):
        return True
    if not kind or kind.group("kind").lower() not in _NAMED_NEARBY:
        return False
    kind_word = re.compile(rf"{re.escape(kind.group('kind'))}s?", re.IGNORECASE)
    for start, end in sentence_spans(document):
        tokens = words(document[start:end])
        for i, token in enumerate(tokens):
            near = " ".join(tokens[max(0, i - 3) : i + 4])  # a name next to it: "RTX 3090 GPUs"
            if kind_word.fullmatch(token) and names_new(question, near):
                return True
    return False


def missing_answer_type(
    question: str, document: str, best_sentence: str = "", sources: str = ""
) -> str:
    """Questions whose answer has a form no statistic can fake: a year needs a year in the
    document, authors need the document to name its authors, a license question a license,
    "how many X" a number next to X in the document (in any source when the question asks
    several things, where the answer may come from several papers) and a number in the best
    sentence, "which GPU / framework / LLM backbone" a name the question does not already
    give in the best sentence, a unit asked for ("in milliseconds", "how long did it take") a
    number in that unit. Returns the missing kind, or ""."""
    several = asks_several(question)
    if best_sentence and not _names_an_answer(question, document, best_sentence):
        return "name"
    if best_sentence and _COUNT_Q.search(question) and not several and not numbers(best_sentence):
        return "number"
    if not counts_stated(counted_things(question), sources if several and sources else document):
        return "number"
    if _YEAR_Q.search(question) and not _YEAR.search(document):
        return "year"
    if _AUTHORS_Q.search(question) and not _AUTHOR_EVIDENCE.search(document):
        return "authors"
    if _LICENSE_Q.search(question) and not _LICENSE_EVIDENCE.search(document):
        return "license"
    unit = asked_unit(question)
    if unit and not _UNITS[unit].search(sources if several and sources else document):
        return "unit"
    return ""


# A unit the question asks the answer in ("in milliseconds", "how many ms"), and a number
# written in it.
_UNITS = {
    name: re.compile(rf"\d(?:[\d.,]*\d)?\s*(?:{unit})(?![A-Za-z])", re.IGNORECASE)
    for name, unit in {
        "milliseconds": r"ms|milliseconds?",
        "seconds": r"s|sec|secs|seconds?",
        "minutes": r"min|mins|minutes?",
        "hours": r"h|hrs?|hours?|GPU[- ]hours?",
        "days": r"days?",
        "GB": r"GB|G|GiB",
        "MB": r"MB|M|MiB",
        "dB": r"dB",
    }.items()
}
_UNIT_Q = re.compile(
    r"\b(?i:in|how many)\s+(?i:total\s+|wall-clock\s+)?"
    r"(?P<unit>milliseconds|ms|seconds|minutes|hours|days|GB|GiB|MB|MiB|dB)\b"
)
_UNIT_NAMES = {"ms": "milliseconds", "GiB": "GB", "MiB": "MB"}
# A duration: "2.788M H800 GPU hours", "in 3 days", "0.3 seconds", "12 ms".
_UNITS["time"] = re.compile(
    r"\d(?:[\d.,]*\d)?\s*[KMB]?\s+(?:[\w\-]+\s+){0,2}?"
    r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?)\b"
    r"|\d(?:[\d.,]*\d)?\s*(?:ms|s|h|min)\b"
)
_DURATION_Q = re.compile(
    r"\bhow long\b.*\b(?:take|takes|took|taken|train|trained|training|last|lasts|lasted|spend|"
    r"spent|run|runs|ran|require|requires|required|need|needs|needed)\b|\bhow much (?:wall-clock |"
    r"GPU |accelerator |training )?time\b",
    re.IGNORECASE,
)


def asked_unit(question: str) -> str:
    """The unit the question wants the answer in: "What latency (in milliseconds) ..." ->
    "milliseconds"; "How long did training take?" -> "time"; ""."""
    match = _UNIT_Q.search(question)
    if match:
        unit = match.group("unit")
        return _UNIT_NAMES.get(unit, unit)
    return "time" if _DURATION_Q.search(question) else ""


_MULTI_CUES = re.compile(
    r"\b(both|each|respectively|compare[ds]?|comparison|versus|vs\.?|difference|differ|"
    r"which (?:one|of)|two|three|across|between)\b",
    re.IGNORECASE,
)
_JOINED_QUESTIONS = re.compile(r"\band (?:what|how|which|who|when|where|does|do|is|are)\b", re.I)


def asks_several(question: str) -> bool:
    """Words that ask about several things at once: "both", "compare", "and what ..."."""
    return bool(_MULTI_CUES.search(question) or _JOINED_QUESTIONS.search(question))


NUMBER_WINDOW = 6  # words either side of a number that may name what it counts


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


def _number_near_focus(evidence: Evidence, sentences: list[Candidate]) -> bool:
    """Some sentence states a number within a few words of a term of the asked focus ("128
    TPU chips" for "how many TPU chips"); True when the focus has no content terms but
    generic measures."""
    terms = focus_terms(evidence.focus)
    if not terms:
        return True
    return any(numbers_next_to(terms, c.text, NUMBER_WINDOW) for c in sentences)


def _number_bound(sentence: str, detail_terms: set[str], unit: str) -> bool:
    """The sentence states the asked number: one in the unit asked for ("how long did it
    take": hours, not any number near "train"), else one next to a term of the asked detail."""
    if unit:
        return bool(_UNITS[unit].search(sentence))
    return bool(detail_terms) and numbers_next_to(detail_terms, sentence)


NAME_WEIGHT = 0.6
BOUND_BONUS = 0.3  # a numeric question's number, stated next to what the question asks about


def _sentence_score(cand: Candidate, expects_number: bool) -> float:
    score = cand.similarity + 0.6 * cand.coverage + 0.6 * cand.detail
    score += NAME_WEIGHT * cand.names_found
    if expects_number and not cand.has_number:
        score -= 0.3
    if expects_number and cand.number_bound:
        score += BOUND_BONUS
    return score - 0.01 * cand.hit_index
