"""The refusal policy: when the engine answers, and the rules that refuse whatever the model
says.

Rules refuse answers of a fixed form the evidence lacks (:func:`missing_answer_type`: a year,
a license, a count next to what is counted, a name for "which one performed best", a
number in a unit of the measure asked for, a version, a default, the qualifiers the question
pins its answer to), a name no document of the collection mentions, and an answer from a
document without the question's rare name.

With an LLM generator only retrieval-level signals refuse before the call
(:func:`retrieval_refuses`: nothing retrieved, or a name the collection never mentions); the
prompt decides the rest and the citation validator checks what comes back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from citeqa.text import names, term_set
from service.answering.features import counts_stated
from service.answering.qualifiers import sibling_named, unstated
from service.answering.question import UNITS, Question, name_forms, stated_numbers

if TYPE_CHECKING:
    from service.answering.evidence import Evidence

_LICENSE_EVIDENCE = re.compile(
    r"\b(?:licen[cs]e[ds]?|MIT|Apache|GPL|LGPL|BSD|Creative Commons|CC[- ]BY|public domain)\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
# A version stated: "version 4.1", "release 2.13", "v3.1", "the 2.13 release", "1.1-7 version".
_VERSION = re.compile(
    r"\b(?:version|release|v)\s*\d+(?:[.\-]\d+)*|\b\d+(?:\.\d+)+(?:-\d+)?\s+(?:release|version)\b",
    re.IGNORECASE,
)
VERSION_REACH = 80  # characters either side of a version that may say whose it is
_DEFAULT = re.compile(r"\bdefault", re.IGNORECASE)
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


def _word(name: str) -> re.Pattern[str]:
    """``name`` written as a word of its own, in any case ("lme4", not "lme4a" or "x.lme4")."""
    return re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])", re.IGNORECASE)


def version_stated(subject: str, text: str) -> bool:
    """``text`` states a version ("version 2.40"), of ``subject`` when one is given: the
    subject is written within a few words of it."""
    for match in _VERSION.finditer(text):
        near = text[max(0, match.start() - VERSION_REACH) : match.end() + VERSION_REACH]
        if not subject or _word(subject).search(near):
            return True
    return False


def _says_default(thing: str, sentences: Sequence[str]) -> bool:
    """One of the sentences says "default" and names ``thing`` (when the question names it)."""
    wanted = term_set(thing)
    if not wanted and thing:  # a word too common to be a term ("from"): the word itself
        literal = _word(thing)
        return any(_DEFAULT.search(s) and literal.search(s) for s in sentences)
    return any(_DEFAULT.search(s) and wanted <= term_set(s) for s in sentences)


def missing_answer_type(
    question: Question,
    document: str,
    best_sentence: str = "",
    sources: str = "",
    beside: Sequence[str] = (),
) -> str:
    """Questions whose answer has a form no statistic can fake: a year needs a year in the
    document, a license question a license,
    "how many X" a number next to X in the document (in any source when the question asks
    several things, where the answer may come from several documents) and a number in the
    best sentence, "which one performed best" a name the question does not already give in
    the best sentence, a measure asked for ("in milliseconds", "how long did it take") a
    number in a unit of it ("0.3 seconds"). Asked of one thing (not of several, and offering
    no alternatives), a version ("in which lme4 release") needs a version of what is asked
    about in the document, and a default ("what is the default of X") a sentence that says
    "default" and names X:
    the best sentence or one ``beside`` it (given with it). Each qualifier of the question
    ("a one-billion-parameter model", "ResNet-50", "in 2023") must be stated in the document
    (in any source when it is asked of several), and the best sentence, when it states a
    number, must not name a numbered name of the question with another number only
    ("Apollo-3B ... 55.1" for "Apollo-7B"). Returns the missing kind, or "".
    """
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
    # Asked of several documents, or offering alternatives ("A or B?"): what pins the
    # answer may be in any source.
    spread = several or question.offers_alternatives
    scope = sources if spread and sources else document
    # A version or a default asked of one thing: the evidence says which.
    if not spread:
        if question.version_of is not None and not version_stated(question.version_of, scope):
            return "version"
        near = list(beside) or [best_sentence or document]
        if question.asks_default and not _says_default(question.defaulted, near):
            return "default"
    if unstated(question.qualifiers, scope):
        return "qualifier"
    # Asked of one variant, the best sentence states a number of a sibling variant only.
    numbered = best_sentence and stated_numbers(best_sentence)
    if not spread and numbered and sibling_named(question.qualifiers, best_sentence):
        return "qualifier"
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
