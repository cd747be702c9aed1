"""The refusal policy: when the engine answers, and the rules that refuse whatever the model
says.

Rules refuse answers of a fixed form the evidence lacks (:func:`missing_answer_type`: a year,
a license, a count next to what is counted, a name for "which one performed best", a
number in the unit asked for), a name no document of the collection mentions, and an answer
from a document without the question's rare name.

With an LLM generator only retrieval-level signals refuse before the call
(:func:`retrieval_refuses`: nothing retrieved, or a name the collection never mentions); the
prompt decides the rest and the citation validator checks what comes back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from citeqa.text import names
from service.answering.features import counts_stated
from service.answering.question import UNITS, Question, name_forms, stated_numbers

if TYPE_CHECKING:
    from service.answering.evidence import Evidence

_LICENSE_EVIDENCE = re.compile(
    r"\b(?:licen[cs]e[ds]?|MIT|Apache|GPL|LGPL|BSD|Creative Commons|CC[- ]BY|public domain)\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_URL = re.compile(r"https?://\S+")
KIND_OF_THING = re.compile(r"[A-Z]{2,}s")  # "LLMs", "GPUs": kinds of things, not names


def names_new(question: Question, sentence: str) -> list[str]:
    """The names of ``sentence`` that the question does not already name ("LLM-like" is
    named by "LLM"), kinds of things ("LMMs") aside."""
    return [
        n
        for n in names(_URL.sub(" ", sentence))
        if not KIND_OF_THING.fullmatch(n) and not name_forms(n) & question.name_keys
    ]


def _names_an_answer(question: Question, best_sentence: str) -> bool:
    """For "which method performed best" (answered by a name): the best sentence names
    something the question does not. True for other questions."""
    return not question.asks_best_one or bool(names_new(question, best_sentence))


def missing_answer_type(
    question: Question, document: str, best_sentence: str = "", sources: str = ""
) -> str:
    """Questions whose answer has a form no statistic can fake: a year needs a year in the
    document, a license question a license,
    "how many X" a number next to X in the document (in any source when the question asks
    several things, where the answer may come from several documents) and a number in the
    best sentence, "which one performed best" a name the question does not already give in
    the best sentence, a unit asked for ("in milliseconds", "how long did it take") a number
    in that unit. Returns the missing kind, or ""."""
    several = question.asks_several
    if best_sentence and not _names_an_answer(question, best_sentence):
        return "name"
    if best_sentence and question.asks_count and not several and not stated_numbers(best_sentence):
        return "number"
    if not counts_stated(list(question.counted), sources if several and sources else document):
        return "number"
    if question.asks_year and not _YEAR.search(document):
        return "year"
    if question.asks_license and not _LICENSE_EVIDENCE.search(document):
        return "license"
    unit = question.unit
    if unit and not UNITS[unit].search(sources if several and sources else document):
        return "unit"
    return ""


def retrieval_refuses(evidence: Evidence) -> bool:
    """Nothing relevant was retrieved: no hits, or the question names something no document
    of the collection mentions. The only refusals before an LLM call."""
    return not evidence.hits or bool(evidence.unknown_names)


def answerable(evidence: Evidence, retrieval_only: bool) -> bool:
    """Whether the engine answers: with ``retrieval_only`` (an LLM generator, which decides
    by itself from the sources) unless :func:`retrieval_refuses`; else when the answerability
    model clears its threshold and no rule refuses. A question about the collection as a
    whole is answered by its documents whenever it has some (the sources are chosen for the
    collection, not for their similarity to the question)."""
    if evidence.question.about_collection:
        return bool(evidence.hits)
    if retrieval_only:
        return not retrieval_refuses(evidence)
    return evidence.answerability >= evidence.threshold and not evidence.ruled_out
