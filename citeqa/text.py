"""Text helpers shared by ingest and the answer engine: sentences, terms, numbers."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import nltk
from nltk.tokenize.punkt import PunktTokenizer

_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-\.]*[A-Za-z0-9]|[A-Za-z0-9]")
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9])(\d+(?:[.,]\d+)*)\s*(%|x|×|k|m|b|bn|billion|million|thousand)?(?![A-Za-z])",
    re.IGNORECASE,
)

# Question words and words that name the corpus itself rather than a detail being asked for.
QUESTION_WORDS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "many",
        "much",
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "paper",
        "papers",
        "work",
        "study",
        "article",
        "abstract",
        "propose",
        "proposed",
        "proposes",
        "introduce",
        "introduced",
        "introduces",
        "present",
        "presented",
        "presents",
        "describe",
        "described",
        "method",
        "approach",
        "model",
        "models",
        "use",
        "used",
        "uses",
        "using",
        "call",
        "called",
        "named",
        "name",
        "according",
        "report",
        "reported",
        "reports",
        "show",
        "shows",
        "shown",
        "tell",
        "give",
        "about",
        "also",
        "explain",
        "describe",
        "summarize",
        "summarise",
        "list",
        "me",
        "please",
    ]
)


@lru_cache(maxsize=1)
def _nltk_data() -> None:
    """Points nltk at the punkt_tab and stopwords llama_index ships (no download), found
    without importing llama_index (seconds and tens of MB: a lexical build's workers need only
    the stop words)."""
    spec = importlib.util.find_spec("llama_index.core")
    assert spec is not None and spec.submodule_search_locations
    nltk.data.path.append(str(Path(spec.submodule_search_locations[0]) / "_static/nltk_cache"))


@lru_cache(maxsize=1)
def _punkt() -> PunktTokenizer:
    _nltk_data()
    return PunktTokenizer("english")


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from nltk.corpus import stopwords as sw

    _nltk_data()
    return frozenset(sw.words("english"))


# A heading or list number punkt takes for a sentence of its own ("3.2.", "(4)"), and one it
# leaves at the end of the sentence before it ("as follows: 1.").
_LABEL_RE = re.compile(r"\(?\d{1,3}(?:\.\d{1,3})*[.)]?")
_TRAILING_LABEL_RE = re.compile(r"[.:;!?]\s+(\d{1,2}(?:\.\d{1,2})*[.)])$")
_DOTTED_END_RE = re.compile(r"\d\.\d+\.$|/\S*\.$")  # "doi:10.1016/j.csda.2005.04." ...
_NUMBER_TAIL_RE = re.compile(r"\d+(?:\.\d+)*\.?")  # ... and its tail, "004."


# Two or more initials ("E.T.", "S.V.", "J.A."): a name's or an abbreviation's, which punkt
# takes for a sentence end when a capitalised word follows ("we introduce E.T. Bench", "S.V.
# Rajkumar"); a sentence seldom ends with one.
_INITIALS_END_RE = re.compile(r"(?:^|[\s(\[])(?:[A-Z]\.){2,}$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (punkt, with line breaks as boundaries),
    heading and list numbers kept with the sentence they number, and no sentence ended by
    initials."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        base = line.start()
        pieces = _with_labels(line.group(), list(_punkt().span_tokenize(line.group())))
        for start, end in _past_initials(line.group(), pieces):
            spans.append((base + start, base + end))
    return spans


def _past_initials(line: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` of one line with each one that ends in initials joined to the next."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and _INITIALS_END_RE.search(line[out[-1][0] : out[-1][1]]):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _with_labels(line: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` of one line with each number label ("1.", "3.2.") moved to the sentence
    it starts; a label that ends the line, or the tail of a dotted number ("...2005.04." +
    "004."), stays with the sentence before it."""
    out: list[tuple[int, int]] = []
    label: int | None = None  # start of a label waiting for its sentence
    for position, (start, end) in enumerate(spans):
        start = start if label is None else label
        label = None
        piece = line[start:end]
        follows_number = bool(out) and bool(_DOTTED_END_RE.search(line[out[-1][0] : out[-1][1]]))
        if _NUMBER_TAIL_RE.fullmatch(piece) and follows_number:
            out[-1] = (out[-1][0], end)
            continue
        if _LABEL_RE.fullmatch(piece) and position + 1 < len(spans):
            label = start
            continue
        trailing = _TRAILING_LABEL_RE.search(piece)
        if trailing and position + 1 < len(spans):
            out.append((start, start + trailing.start() + 1))
            label = start + trailing.start(1)
            continue
        if _LABEL_RE.fullmatch(piece) and out:
            out[-1] = (out[-1][0], end)
            continue
        out.append((start, end))
    return out


QUOTATION_RE = re.compile(r"\u201c[^\u201c\u201d\n]*\u201d|\"[^\"\n]*\"")


def answer_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of a written answer: as :func:`sentence_spans`, except that a
    sentence end inside a closed quotation is none. A quoted title ending in "?" ("MMBench: Is
    Your Multi-modal Model an All-around Player?") or holding a full stop ("E.T. Bench") stays
    part of the sentence that quotes it, so no citation marker lands inside it."""
    quoted = [m.span() for m in QUOTATION_RE.finditer(text)]
    spans: list[tuple[int, int]] = []
    for start, end in sentence_spans(text):
        if spans and any(q_start < spans[-1][1] < q_end for q_start, q_end in quoted):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


@lru_cache(maxsize=1)
def stemmer() -> Any:
    """The Snowball English stemmer (PyStemmer), shared with the BM25 index."""
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return str(stemmer().stemWord(word.lower()))


def words(text: str) -> list[str]:
    """Word tokens, keeping hyphenated names and decimals ("DeepSeek-V3", "2.5")."""
    return [w.rstrip(".") for w in _WORD_RE.findall(text)]


def lowered_words(text: str) -> list[str]:
    """:func:`words`, lower case, in one regex pass and one ``lower`` over all of them (a word
    is ASCII, holds no space and never ends with "."): what a cold build of the lexical index
    makes every chunk's stems and name keys from."""
    found = _WORD_RE.findall(text)
    return " ".join(found).lower().split(" ") if found else []


def word_terms(lowered: str) -> frozenset[str]:
    """What one lower-case word adds to :func:`term_set`: its stem, and its parts' stems."""
    stop = stopwords()
    parts = [lowered, *lowered.split("-")] if "-" in lowered else [lowered]
    return frozenset(stem(p) for p in parts if p and p not in stop)


def term_set(text: str, drop_question_words: bool = False) -> set[str]:
    """Stemmed content terms; hyphenated names also contribute their parts."""
    stop = stopwords()
    terms: set[str] = set()
    for word in words(text):
        lowered = word.lower()
        parts = [lowered, *lowered.split("-")] if "-" in lowered else [lowered]
        for part in parts:
            if not part or part in stop or (drop_question_words and part in QUESTION_WORDS):
                continue
            terms.add(stem(part))
    return terms


def normalise_number(raw: str) -> str:
    """'2,990' -> '2990'; '1.50' -> '1.5'."""
    digits = raw.replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits


def numbers(text: str) -> set[str]:
    """Normalised numbers stated in ``text``."""
    return {normalise_number(m.group(1)) for m in _NUMBER_RE.finditer(text)}


def name_weight(name: str, idf: dict[str, float], default_idf: float) -> float:
    """How much a name says about which document is meant: the IDF of its rarest term."""
    return max((idf.get(t, default_idf) for t in term_set(name)), default=default_idf)


def bm25_idf(count: int, n: int) -> float:
    """BM25's IDF of a term ``count`` of ``n`` texts hold (0: an unseen term)."""
    return math.log(1 + (n - count + 0.5) / (count + 0.5))


def idf_table(texts: Sequence[str]) -> tuple[dict[str, float], float]:
    """BM25-style IDF of each stemmed term over ``texts``, and the IDF of an unseen term."""
    n = len(texts)
    df: dict[str, int] = {}
    for text in texts:
        for term in term_set(text):
            df[term] = df.get(term, 0) + 1
    return {t: bm25_idf(c, n) for t, c in df.items()}, bm25_idf(0, n)


_QUANTITY = re.compile(r"\d+(?:[.,]\d+)*[A-Za-z]?")  # "671B", "13B", "2.5x", "8": amounts
_MIXED_CASE = re.compile(r"[a-z][A-Z]|[A-Z]{2}|[A-Za-z]\d|\d[A-Za-z]{2,}")


def _is_name_part(part: str, sentence_start: bool) -> bool:
    lowered = part.lower()
    if not part or lowered in stopwords() or lowered in QUESTION_WORDS or _QUANTITY.fullmatch(part):
        return False
    if _MIXED_CASE.search(part):  # "DeepSeek", "TPU", "MMBench", "V3", "INT2"
        return True
    return part[0].isupper() and not sentence_start  # "Whisper", "Kinetics", "Apple"


def names(text: str) -> list[str]:
    """Words of ``text`` that name something: "DeepSeek-V3", "TPU", "Kinetics-700", "Whisper".

    A word counts when one of its hyphen-separated parts is written in mixed case, in capitals,
    mixes letters and digits, or is capitalised away from the start of a sentence. Amounts
    ("671B-parameter", "21k-class", "8-bit") and question words do not count.
    """
    found: list[str] = []
    at_start = True
    for match in _WORD_RE.finditer(text):
        word = match.group().rstrip(".")
        parts = word.split("-")
        if any(_is_name_part(p, at_start and i == 0) for i, p in enumerate(parts)):
            found.append(word)
        following = text[match.end() : match.end() + 2]
        at_start = following.startswith((". ", "? ", "! ")) or following.startswith(("?", "!"))
    return found


# How code names a thing, in any language: a call ("tbats()", "vb()"), a dotted or snake_case
# identifier ("glmer.nb", "coxph.control", "log_lik"), a word quoted as code (`lmer`).
_CODE_NAME = re.compile(
    r"`(?P<quoted>[^`\s]{2,60})`"
    r"|(?<![\w.])(?P<call>[A-Za-z][\w.]*)\((?!s\))"
    r"|(?<![\w.])(?P<dotted>[A-Za-z][A-Za-z0-9]*(?:[._][A-Za-z0-9]+)+)(?![\w(])"
)
_CODE_MARK = re.compile(r"[a-z0-9][._][a-z]|\(\)$", re.IGNORECASE)


def code_names(text: str) -> list[str]:
    """The identifiers ``text`` names the way code writes them: calls as "tbats()",
    dotted and snake_case names ("glmer.nb", "log_lik"), words quoted as code. Abbreviations
    of one-letter parts ("e.g.", "U.S.") and version numbers ("v3.1") are not identifiers."""
    found: list[str] = []
    for match in _CODE_NAME.finditer(text):
        if match.group("call"):
            call = match.group("call").rstrip(".")
            if len(call) >= 2:  # "f(x)" is mathematics
                found.append(call + "()")
            continue
        word = (match.group("quoted") or match.group("dotted")).strip(".")
        parts = [p for p in re.split(r"[._]", word) if p]
        later = parts[1:] or parts
        # "generation.Our": a sentence's end without its space, not a name
        sentence = any(p.istitle() and p.isalpha() for p in word.split(".")[1:])
        if len(word) >= 3 and not sentence and any(len(p) >= 2 and not p.isdigit() for p in later):
            found.append(word)
    return found


def squashed(text: str) -> str:
    """Lower case, letters and digits only: "Human-Eval", "HumanEval" -> "humaneval"."""
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def name_keys(name: str) -> list[str]:
    """How to look a name up in a corpus, spelling aside, squashed. Plain lower-case words
    joined to it go ("PPO-based" -> "ppo", "T3-enhanced" -> "t3"); what is left is one key
    when it carries a digit ("Kinetics-700" is not "Kinetics-600"), else a key per part that is
    itself a name ("English-to-German" -> "english", "german"); an identifier ("glmer.nb",
    "tbats()", :func:`code_names`) is one key. Keys shorter than three
    characters ("XL") are too short to tell anything."""
    if _CODE_MARK.search(name) or (name.isalpha() and name.islower()):
        # an identifier ("glmer.nb", "tbats()", `lmer`: names() never gives a lower-case
        # word, code_names() does) is one key
        return [k for k in [squashed(name)] if len(k) >= 3]
    parts = [p for p in name.split("-") if p and not (p.isalpha() and p.islower())]
    if any(ch.isdigit() for p in parts for ch in p):
        keys = [squashed("-".join(parts))]
    else:
        keys = [squashed(p) for p in parts if _is_name_part(p, sentence_start=False)]
    return [k for k in keys if len(k) >= 3]


@lru_cache(maxsize=4096)
def _name_patterns(name: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(substring, word pattern) for the whole name, then (for "Next-Block") for each of its
    parts, plurals allowed. The substring is a cheap test before the regex."""
    lowered = name.lower().removesuffix("()")  # "tbats()" is written "tbats(y)" too
    whole = (lowered, re.compile(rf"(?<![a-z0-9]){re.escape(lowered)}(?![a-z0-9])"))
    if "-" not in name:
        return (whole,)
    parts = [p for p in lowered.split("-") if p and p not in stopwords()]
    return (
        whole,
        *((p, re.compile(rf"(?<![a-z0-9]){re.escape(p)}(?:e?s)?(?![a-z0-9])")) for p in parts),
    )


def _occurs(text_lower: str, pattern: tuple[str, re.Pattern[str]]) -> bool:
    return pattern[0] in text_lower and pattern[1].search(text_lower) is not None


def mentions(text_lower: str, name: str) -> bool:
    """``name`` occurs in a lower-cased text: exactly ("DeepNet" is not "DeepNets-1M"), or, for
    a hyphenated name, as its parts ("Next-Block" in "next block prediction")."""
    whole, *parts = _name_patterns(name)
    if _occurs(text_lower, whole):
        return True
    return bool(parts) and all(_occurs(text_lower, p) for p in parts)
