"""Statistics of one collection, read from the lexical snapshot a retrieval was made from.

Everything the evidence features need to know about the corpus lives here, so that no
constant of one corpus enters a rule: how rare a term or a name is (IDF over the chunks, and
the share of *documents* that mention it) and the abbreviations the corpus defines
("General Data Protection Regulation (GDPR)"). A request reads the statistics of the snapshot
its hits were taken from; nothing per request is kept on shared objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from citeqa.text import bm25_idf, mentions, term_set

# "General Data Protection Regulation (GDPR)": two to eight words, then their initials in
# parentheses; and "GDPR (General Data Protection Regulation)".
_LONG_THEN_SHORT = re.compile(
    r"((?:[A-Za-z][\w\-]*\s+){1,7}[A-Za-z][\w\-]*)\s*\(\s*([A-Z][A-Za-z0-9\-]{1,9})\s*\)"
)
_SHORT_THEN_LONG = re.compile(
    r"\b([A-Z][A-Za-z0-9\-]{1,9})\s*\(\s*((?:[A-Za-z][\w\-]*\s+){1,7}[A-Za-z][\w\-]*)\s*\)"
)
_SHORT_IN_PARENS = re.compile(r"\(\s*[A-Z][A-Za-z0-9\-]{1,9}\s*\)")  # in every _LONG_THEN_SHORT
_MINOR = frozenset(["of", "and", "for", "the", "in", "on", "to", "a", "an", "with", "by"])


def _expansion(words: list[str], short: str) -> str:
    """The trailing words of ``words`` whose initials spell ``short`` (minor words like
    "of" may be skipped or count; the parts of a hyphenated word count as words:
    "not-safe-type-three (NSTT)"), else ""."""
    letters = [c.lower() for c in short if c.isalpha()]
    if short.endswith("s") and short[:-1].isupper():  # "LLMs": a plural of "LLM"
        letters = letters[:-1]
    if len(letters) < 2:
        return ""
    for start in range(len(words) - 1, -1, -1):
        taken = words[start:]
        initials = [w[0].lower() for w in taken if w.lower() not in _MINOR]
        with_minor = [w[0].lower() for w in taken]
        parts = [p for w in taken for p in w.split("-") if p]
        if letters in (initials, with_minor, [p[0].lower() for p in parts]):
            return " ".join(taken).lower()
        if len(initials) > len(letters):
            break
    return ""


def _long_then_short(text: str) -> list[tuple[str, str]]:
    """``_LONG_THEN_SHORT.findall(text)``, tried only where a match can start. A match is up to
    eight words, then a short form in parentheses: so each short form in parentheses is
    searched for a match among the eight words before it, not every letter of the text (the
    pattern tries eight words at each letter: most of a lexical index's cold build, once)."""
    found: list[tuple[str, str]] = []
    done = 0  # findall's position: matches do not overlap
    for short in _SHORT_IN_PARENS.finditer(text):
        if short.start() < done:
            continue
        start = max(_words_before(text, short.start(), 8), done)
        match = _LONG_THEN_SHORT.search(text, start, short.end())
        if match is not None:
            found.append((match.group(1), match.group(2)))
            done = match.end()
    return found


def _short_then_long(text: str) -> list[tuple[str, str]]:
    """``_SHORT_THEN_LONG.findall(text)``, tried only where a match can start: a match's short
    form is the up to ten letters, digits and hyphens before the spaces before a "(", so each
    "(" is tried from those few places, not from every letter of the text."""
    found: list[tuple[str, str]] = []
    done = 0  # findall's position: matches do not overlap
    opening = text.find("(")
    while opening >= 0:
        end = opening
        while end > done and text[end - 1].isspace():
            end -= 1
        for start in range(max(done, end - 10), end - 1):
            if "A" <= text[start] <= "Z" and (match := _SHORT_THEN_LONG.match(text, start)):
                found.append((match.group(1), match.group(2)))
                done = match.end()
                break
        opening = text.find("(", max(opening + 1, done))
    return found


def _words_before(text: str, end: int, count: int) -> int:
    """Where the last ``count`` words (``[\\w-]+``, split by whitespace) before ``end`` begin,
    or the run of word characters, hyphens and whitespace that ends at ``end`` does."""
    start, words, in_word = end, 0, False
    while start > 0:
        char = text[start - 1]
        if char.isspace():
            if in_word:
                words, in_word = words + 1, False
                if words == count:
                    break
        elif char.isalnum() or char in "_-":
            in_word = True
        else:
            break
        start -= 1
    return start


def abbreviation_pairs(text: str) -> list[tuple[str, str]]:
    """(short form, long form), both lower case, of each abbreviation the text spells out:
    "General Data Protection Regulation (GDPR)" and "GDPR (General Data Protection
    Regulation)"."""
    if "(" not in text:  # both patterns need one: most texts skip their scans
        return []
    written = [(short, long) for long, short in _long_then_short(text)]
    written += _short_then_long(text)
    pairs = [(short.lower(), _expansion(long.split(), short)) for short, long in written]
    return [(short, long_form) for short, long_form in pairs if long_form]


def abbreviations(texts: Iterable[str]) -> dict[str, frozenset[str]]:
    """short form (lower case) -> the long forms the texts define for it, and each long form
    -> its short forms: both directions of "General Data Protection Regulation (GDPR)"."""
    pairs: dict[str, set[str]] = {}
    for text in texts:
        for short, long_form in abbreviation_pairs(text):
            pairs.setdefault(short, set()).add(long_form)
            pairs.setdefault(long_form, set()).add(short)
    return {k: frozenset(v) for k, v in pairs.items()}


@dataclass(frozen=True)
class CorpusStats:
    """IDF of stemmed terms over the chunks, document frequency of terms, the documents'
    count and the abbreviations the corpus defines."""

    idf: dict[str, float] = field(default_factory=dict)
    default_idf: float = 1.0  # IDF of a term no chunk holds: the largest there is
    doc_freq: dict[str, int] = field(default_factory=dict)  # term -> documents holding it
    documents: int = 0
    aliases: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, texts: Sequence[str], doc_ids: Sequence[str]) -> CorpusStats:
        """The statistics of chunk ``texts`` of the documents ``doc_ids``: each text's terms
        are read once, for the IDF over chunks (BM25's, as :func:`citeqa.text.idf_table`)
        and the document frequency alike."""
        chunk_freq: dict[str, int] = {}
        per_doc: dict[str, set[str]] = {}
        for text, doc in zip(texts, doc_ids, strict=True):
            terms = term_set(text)
            for term in terms:
                chunk_freq[term] = chunk_freq.get(term, 0) + 1
            per_doc.setdefault(doc, set()).update(terms)
        n = len(texts)
        idf = {t: bm25_idf(c, n) for t, c in chunk_freq.items()}
        doc_freq: dict[str, int] = {}
        for terms in per_doc.values():
            for term in terms:
                doc_freq[term] = doc_freq.get(term, 0) + 1
        default_idf = bm25_idf(0, n)
        return cls(idf, default_idf, doc_freq, len(per_doc), abbreviations(texts))

    def weight(self, term: str) -> float:
        return self.idf.get(term, self.default_idf)

    def relative_idf(self, value: float) -> float:
        """An IDF as a share of the largest this collection has (a term no chunk holds)."""
        return value / self.default_idf if self.default_idf else 0.0

    def name_weight(self, name: str) -> float:
        """How much a name says about which document is meant: the IDF of its rarest term."""
        return max((self.weight(t) for t in term_set(name)), default=self.default_idf)

    def name_documents(self, name: str) -> int:
        """How many documents hold the name's rarest term (0: none)."""
        return min((self.doc_freq.get(t, 0) for t in term_set(name)), default=0)

    def spellings(self, name: str) -> list[str]:
        """The name and the abbreviations / expansions the corpus defines for it."""
        return [name, *sorted(self.aliases.get(name.lower(), ()))]

    def mentions(self, text_lower: str, name: str) -> bool:
        """The lower-cased text mentions the name, or a form the corpus defines for it."""
        return any(mentions(text_lower, form) for form in self.spellings(name))
