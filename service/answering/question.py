"""What a question asks, read from its English alone: the asked focus, whether it wants a
number (and in which unit), what it counts, whether it asks about several things.

:class:`Question` holds the whole analysis, made once per ask (:meth:`Question.parse`) and
passed down: retrieval, evidence, features, the refusal rules and the generators read its
fields instead of analysing the text again.

Only rules that hold of questions in general live here: "how many" wants a number, "what
year" a year, "in milliseconds" a number in milliseconds. No word list of one field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from citeqa.text import (
    code_names,
    name_keys,
    names,
    numbers,
    squashed,
    stopwords,
    term_set,
    words,
)
from service.answering.qualifiers import (
    NUMBER_WORDS,
    Qualifier,
    asked_qualifiers,
    offers_alternatives,
)

_WH_RE = re.compile(r"\b(what|which|how many|how much|who|whom|whose)\b", re.IGNORECASE)
_PREPOSITIONS = frozenset(["in", "of", "for", "by", "on", "at", "with", "from", "to", "under"])

# Questions about a quantity, in any field: "how many / how much / how long", "what share",
# "what percentage", "the number of", "by what factor".
_NUMERIC_Q = re.compile(
    r"\b(how (many|much|large|big|long|fast|deep|high|small|far|old|often|wide|heavy)|"
    r"percentage|percent|fraction|proportion|number of|amount of|by what factor|ratio)\b",
    re.IGNORECASE,
)

# A number word counts when what it counts follows it: "one argument", "twenty datasets"; not
# "one of them", "one can", "half the time" (a stop word follows).
_NUMBER_WORD_RE = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\s+([A-Za-z][\w\-]*)", re.IGNORECASE)


def counted_in_words(word: str, following: str) -> set[str]:
    """The number a number word states when what it counts follows it ("one argument"), not
    a stop word ("one of them", "one can"); else nothing."""
    value = NUMBER_WORDS.get(word.lower())
    if value is None or not following or following.lower() in stopwords():
        return set()
    return {value}


def stated_numbers(text: str) -> set[str]:
    """The numbers ``text`` states, in digits ("2,990" -> "2990") or in words ("one
    argument")."""
    found = numbers(text)
    for match in _NUMBER_WORD_RE.finditer(text):
        found |= counted_in_words(match.group(1), match.group(2))
    return found


def expects_number(question: str) -> bool:
    """The question asks for a quantity ("how many", "what percentage", "number of")."""
    return bool(_NUMERIC_Q.search(question))


def question_word(question: str) -> re.Match[str] | None:
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
    match = question_word(question)
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


_SUBJECT = r"(?:the\s+)?(?P<subject>[\w\-\.\^ ]{1,60}?)"
# "What is meant by X?", "What is X?", "Explain X", "What does X stand for?", "Define X", "X
# stands for (what)?": the ways English asks what a thing is ("meant by" before "what is").
_DEFINITION_QS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^\s*what (?:is|are) meant by\s+" + _SUBJECT + r"\s*\??\s*$",
        r"^\s*(?:what(?: is|'s| are)|describe|explain|tell me about|define)\s+"
        + _SUBJECT
        + r"(?:\s+(?:model|method|paper))?\s*\??\s*$",
        r"^\s*what (?:does|do)\s+" + _SUBJECT + r"\s+(?:do|mean|stand for)\s*\??\s*$",
        r"^\s*" + _SUBJECT + r"\s+(?:stands? for|means)(?: what)?\s*\?\s*$",
    )
)


def defined_subject(question: str) -> str:
    """The X of "What is X?" (short subjects only), else ""."""
    for pattern in _DEFINITION_QS:
        match = pattern.match(question)
        if match and len(match.group("subject").split()) <= 5:
            return match.group("subject").strip()
    return ""


YES_NO_Q = re.compile(r"\s*(?:does|did|do|is|are|was|were|can|has|have)\b", re.IGNORECASE)

COUNT_Q = re.compile(r"\bhow (?:many|much)\b", re.IGNORECASE)
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


def counted_things(question: str) -> list[str]:
    """What each "how many" (or "number of") of the question counts: "How many TPU chips
    were used ..." -> ["TPU chips"]; "DeepNet: number of warmup steps?" -> ["warmup steps"]."""
    return [m.group("thing") for m in _COUNTED.finditer(question)]


def counted_not_measured(question: str) -> list[str]:
    """:func:`counted_things` less units ("how many hours": a measure, :func:`asked_unit`'s,
    which any unit of it answers: "76 minutes")."""
    return [t for t in counted_things(question) if t not in _DIMENSIONS]


_UNIT_Q = re.compile(
    r"\b(?i:in|how many)\s+(?i:total\s+|wall-clock\s+)?"
    r"(?P<unit>milliseconds|ms|seconds|minutes|hours|days|GB|GiB|MB|MiB|dB)\b"
)
_DIMENSIONS = dict.fromkeys(["milliseconds", "ms", "seconds", "minutes", "hours", "days"], "time")
_DIMENSIONS |= dict.fromkeys(["GB", "GiB", "MB", "MiB"], "size")
# A measure the question asks the answer in (:func:`asked_unit`), and a number written in a
# unit of it.
UNITS = {
    # a duration: "2.788M H800 GPU hours", "in 3 days", "0.3 seconds", "12 ms"
    "time": re.compile(
        r"\d(?:[\d.,]*\d)?\s*[KMB]?\s+(?:[\w\-]+\s+){0,2}?"
        r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?)\b"
        r"|\d(?:[\d.,]*\d)?\s*(?:ms|s|h|min)\b"
    ),
    "size": re.compile(r"\d(?:[\d.,]*\d)?\s*(?:[KMGTP]i?B|bytes)(?![A-Za-z])"),
    "dB": re.compile(r"\d(?:[\d.,]*\d)?\s*(?:dB)(?![A-Za-z])", re.IGNORECASE),
}
_DURATION_Q = re.compile(
    r"\bhow long\b.*\b(?:take|takes|took|taken|train|trained|training|last|lasts|lasted|spend|"
    r"spent|run|runs|ran|require|requires|required|need|needs|needed)\b|\bhow much (?:wall-clock |"
    r"GPU |accelerator |training )?time\b",
    re.IGNORECASE,
)


def asked_unit(question: str) -> str:
    """What the question wants the answer measured in: "How long did training take?" and
    "What latency (in milliseconds) ..." -> "time" (a time in any unit answers it: "0.3
    seconds" is 300 ms); "in GB" -> "size"; "in dB" -> "dB"; ""."""
    match = _UNIT_Q.search(question)
    if match:
        unit = match.group("unit")
        return _DIMENSIONS.get(unit, unit)
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


# "Which lme4 version ...", "Starting with which release ...", "since which version?": a
# version answers it; the word before "version" names whose ("lme4", "SAS").
VERSION_Q = re.compile(
    r"\b(?:which|what)\s+(?:(?P<subject>[\w\-.]+)\s+)?(?:version|release)\b(?!\s*\d)",
    re.IGNORECASE,
)
DEFAULT_Q = re.compile(r"\bdefaults?\b", re.IGNORECASE)
# What the default is asked of: "the default value of the convergence threshold thresh in
# glmnet" -> "convergence threshold thresh"; "Default bobyqa maxfun in lmerControl?" ->
# "bobyqa maxfun". Its last word is the thing itself.
_DEFAULTED = re.compile(
    r"\bdefault\s+(?:(?:value|values|number|setting|settings|choice)\s+(?:of|for)\s+)?"
    r"(?:the\s+|an?\s+)?(?P<phrase>(?:[\w.\-]+\s+){0,4}?[\w.\-]+)"
    r"(?=\s+(?:in|of|for|when|if|used|does|do|is|are|was|with|to|by|on|at|argument|"
    r"parameter|option)\b|\s*[?,;.(]|\s*$)",
    re.IGNORECASE,
)


# Words that say a default is asked, not of what: "the default from value" asks of "from".
_DEFAULT_KINDS = frozenset({"value", "values", "setting", "settings", "choice", "number"})


def defaulted(question: str) -> str:
    """The word naming what a default is asked of ("thresh" in "the default value of the
    convergence threshold thresh in glmnet", "from" in "Fstats default from value?"), or ""
    when the question does not say it after "default" ("which values does it try by
    default?")."""
    match = _DEFAULTED.search(question)
    if not match:
        return ""
    words = match.group("phrase").split()
    while len(words) > 1 and words[-1].lower() in _DEFAULT_KINDS:
        words.pop()
    return words[-1]


def version_subject(question: str) -> str | None:
    """Whose version the question asks ("In which SAS release ..." -> "SAS"; "since which
    version" -> ""), or None when it asks none."""
    match = VERSION_Q.search(question)
    if not match:
        return None
    subject = match.group("subject") or ""
    return "" if subject.lower() in stopwords() else subject


YEAR_Q = re.compile(
    r"\b(?:(?:what|which) year|when (?:was|were|did)\b.*\b(?:publish|releas|introduc|propos|"
    r"present|written|appear))",
    re.IGNORECASE,
)
# "Which system ...", "which of the benchmarks ...": asks to identify a thing.
WHICH_Q = re.compile(r"\bwhich\s+(?!year|version|release)[a-z]", re.IGNORECASE)
LICENSE_Q = re.compile(r"\blicen[cs](?:e|ed|es|ing)\b", re.IGNORECASE)
# "Which method performed best?", "which of the models scored highest": a name answers it.
BEST_ONE_Q = re.compile(
    r"\bwhich\b(?:\s+[\w\-]+){0,6}?\s+(?:performed|performs|scored|scores|achieved|achieves|"
    r"obtained|obtains|was|is|ranked|ranks|did)\s+(?:the\s+)?(?:best|highest|top|strongest|"
    r"lowest|first)\b",
    re.IGNORECASE,
)


# Nouns English uses for the documents of a collection, and for the collection itself.
DOCUMENT_NOUNS = (
    r"papers|documents|articles|files|sources|texts|reports|publications|studies|works|"
    r"vignettes|manuals|guides|chapters|books|notes|pages|posts|entries"
)
_COLLECTION = r"corpus|collection|library|archive|database|knowledge base|documents|papers"
# "Which (lme4) documents discuss X?", "What papers are about X?", "List the articles on X",
# "Are there any reports about X?": the answer is a list of documents. Not where the noun is a
# verb with its object: a plural subject is never followed by a determiner ("Which reports the
# larger gain, A or B?", "Which studies a smaller model?").
_AS_VERB = r"(?!\s+(?:the|a|an|this|that|these|those|its|their)\b)"
_DOCUMENTS_Q = re.compile(
    rf"^\s*(?:(?:which|what)\s+(?:of\s+the\s+)?(?:[\w\-.]+\s+){{0,3}}?(?:{DOCUMENT_NOUNS})\b{_AS_VERB}|"
    rf"(?:list|name|find|show|give)(?:\s+me)?\s+(?:all\s+)?(?:the\s+)?(?:[\w\-.]+\s+){{0,2}}?"
    rf"(?:{DOCUMENT_NOUNS})\b|are\s+there\s+(?:any\s+)?(?:[\w\-.]+\s+){{0,2}}?(?:{DOCUMENT_NOUNS})\b)",
    re.IGNORECASE,
)
# "What is this corpus about?", "What topics does the collection cover?", "Summarize the
# documents": the collection itself is asked about.
_COLLECTION_Q = re.compile(
    rf"\b(?:this|the|these|your|my|our)\s+(?:{_COLLECTION})\b(?:\s+(?:about|cover|contain|"
    rf"include|hold|discuss)\b|\s*[?.!]?\s*$)",
    re.IGNORECASE,
)
_OVERVIEW_WORDS = frozenset(
    term_set(
        "topic subject theme area field cover contain include hold discuss about overview "
        "summary summarize summarise kind sort type main general this these corpus collection "
        "library archive database knowledge base documents papers"
    )
)


def about_collection(question: str) -> bool:
    """The question asks what the collection as a whole is about: it names the collection
    ("this corpus", "the documents") and asks nothing more specific than its topics."""
    if not _COLLECTION_Q.search(question):
        return False
    return term_set(question, drop_question_words=True) <= _OVERVIEW_WORDS


def asked_names(text: str) -> tuple[str, ...]:
    """The names a question mentions, once each, in order: those written as names
    ("DeepSeek-V3", "GDPR", "lme4") and those written as code ("tbats()", "glmer.nb")."""
    return tuple(dict.fromkeys([*names(text), *code_names(text)]))


def name_forms(name: str) -> set[str]:
    """A name squashed and its look-up keys: "LLM-like" -> {"llmlike", "llm"}."""
    return {squashed(name), *name_keys(name)}


@dataclass(frozen=True)
class Question:
    """A question analysed once: what retrieval, evidence, refusal and the generators need to
    know of its text. Build it with :meth:`parse`."""

    text: str
    words: tuple[str, ...]  # its word tokens (:func:`citeqa.text.words`)
    terms: frozenset[str]  # stemmed content terms, question words dropped
    names: tuple[str, ...]  # the names it mentions (:func:`asked_names`), once each, in order
    name_keys: frozenset[str]  # the names squashed, with their look-up keys (:func:`name_forms`)
    numbers: frozenset[str]  # numbers it states, in digits or words
    focus: str  # the asked thing after the wh-word (:func:`focus_phrase`), or ""
    defined_subject: str  # the X of "What is X?", or ""
    expects_number: bool  # asks for a quantity
    unit: str  # the unit the answer is wanted in (:func:`asked_unit`), or ""
    counted: tuple[str, ...]  # what each "how many" counts
    asks_count: bool  # "how many" / "how much"
    asks_several: bool  # about several things at once
    yes_no: bool  # "Does X use Y?"
    asks_year: bool  # "what year", "when was X published"
    version_of: str | None  # whose version it asks ("lme4", or "" for any), None if none
    asks_default: bool  # "what is the default of X": the evidence must say it is a default
    defaulted: str  # the word naming what the default is asked of (:func:`defaulted`), or ""
    qualifiers: tuple[Qualifier, ...]  # amounts and numbered names it pins the answer to
    offers_alternatives: bool  # "A or B?", "(e.g. X)": the answer may be any of them
    asks_license: bool
    asks_best_one: bool  # "which method performed best": a name answers it
    asks_which: bool  # "Which system offloads ...?": it asks to identify a thing, a name may
    asks_documents: bool  # "which papers discuss X?": a list of documents answers it
    about_collection: bool  # "what is this corpus about?"

    @property
    def lists_documents(self) -> bool:
        """Answered by documents, one cited sentence each: "which papers discuss X?", "what
        is this corpus about?"."""
        return self.asks_documents or self.about_collection

    def respelled(self, read_as: dict[str, str]) -> Question:
        """The question with each name of ``read_as`` written as it maps it to
        (:func:`service.answering.spelling.corrections`)."""
        text = self.text
        for written, meant in read_as.items():
            text = text.replace(written, meant)
        return Question.parse(text)

    @classmethod
    def parse(cls, text: str) -> Question:
        found = asked_names(text)
        return cls(
            text=text,
            words=tuple(words(text)),
            terms=frozenset(term_set(text, drop_question_words=True)),
            names=found,
            name_keys=frozenset().union(*(name_forms(n) for n in found)),
            numbers=frozenset(stated_numbers(text)),
            focus=focus_phrase(text),
            defined_subject=defined_subject(text),
            expects_number=expects_number(text),
            unit=asked_unit(text),
            counted=tuple(counted_not_measured(text)),
            asks_count=bool(COUNT_Q.search(text)),
            asks_several=asks_several(text),
            yes_no=bool(YES_NO_Q.match(text)),
            asks_year=bool(YEAR_Q.search(text)),
            version_of=version_subject(text),
            asks_default=bool(DEFAULT_Q.search(text)),
            defaulted=defaulted(text),
            qualifiers=asked_qualifiers(text, found),
            offers_alternatives=offers_alternatives(text),
            asks_license=bool(LICENSE_Q.search(text)),
            asks_best_one=bool(BEST_ONE_Q.search(text)),
            asks_which=bool(WHICH_Q.search(text)),
            asks_documents=bool(_DOCUMENTS_Q.search(text)),
            about_collection=about_collection(text),
        )
