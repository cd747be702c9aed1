"""What one document becomes in the tantivy index (:mod:`service.answering.lexical`): each
chunk's fields and the document's record, made as plain strings and bytes by a :class:`Fielder`
(in the indexing process, or in worker processes: :mod:`service.answering.lexical_workers`) and
handed to the writers by :func:`add`.

A cold build makes these for every chunk, so each chunk's text is read as few times as it can
be: its words (:func:`citeqa.text.lowered_words`) found once, and both its stems (those of
:func:`citeqa.text.term_set`, each distinct word's made once per table) and its name keys made
from them; its bm25s tokens made once, by tantivy's analyzer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import tantivy
from bm25s.stopwords import STOPWORDS_EN

from citeqa.catalog import summarise
from citeqa.text import lowered_words, word_terms
from service.answering.corpus import abbreviations
from service.answering.lexical_views import draw, first_chunk, with_compounds

Row = tuple[str, str, Mapping[str, Any]]  # a chunk's id, text and metadata
NAME_GAP = "|"  # between a text's squashed words and their parts: no phrase spans it
ALIAS = "\x1f"  # between the two forms of an alias term: "gdpr\x1fgeneral data protection ..."
# a chunk's id, "terms" (its tokens joined by spaces), "dl", "tokens", "stems", "names", "record"
ChunkFields = tuple[str, str, int, bytes, str, str, bytes]
WORD_TABLE = 200_000  # distinct words a Fielder's table keeps (then it starts again)
_SEPARATORS = str.maketrans("", "", "-.")  # the characters of a word squashing drops
_ALNUM_RUN = re.compile(r"[a-z0-9]+")
_SEPARATOR = re.compile(r"[-.]")  # in a word: it has parts
_TOKEN = re.compile(r"\b\w\w+\b", re.ASCII)  # the analyzer's regex, on ASCII text


def analyzer() -> tantivy.TextAnalyzer:
    """bm25s' tokens, made by tantivy (scripts/lexical_tantivy_probe.py checks they agree)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"(?u)\b\w\w+\b"))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.custom_stopword(list(STOPWORDS_EN)))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


class DocumentFields(NamedTuple):
    """A document's chunks' fields and its record's (its chunks' stems, its aliases, what the
    documents listing shows of it)."""

    doc_id: str
    chunks: list[ChunkFields]
    stems: str
    aliases: list[str]
    summary: bytes
    first: bytes  # the id of its first chunk (lexical_views.first_chunk)


def name_terms(text: str) -> set[str]:
    """The terms of ``text``'s "names" field: each word squashed ("Human-Eval" -> "humaneval")
    and its parts ("human", "eval"). A name written as two or three words ("Human Eval") is
    found as a phrase of them (:meth:`service.answering.tantivy_view.TantivyView.has_key`)."""
    return set(_name_keys(lowered_words(text)).split()) - {NAME_GAP}


def _name_keys(lowered: list[str]) -> str:
    """A text's "names" field from its lowered words: its words squashed, in order (a phrase
    of them is a name written in several words), then :data:`NAME_GAP` and the parts of each
    word that has some, with two words either side.

    A word (:func:`citeqa.text.words`) holds ASCII letters and digits, "-" and ".", and
    begins and ends with a letter or digit, so squashing it is dropping its "-" and "."; its
    parts are its runs of letters and digits. A word without "-" or "." is its own squashed
    form and its own part, so the parts of the whole text in order would repeat the first
    half: only the words near one with parts are written again, which keeps every phrase of up
    to three parts (:meth:`~service.answering.tantivy_view.TantivyView.has_key` asks no
    longer one) with about a third fewer tokens for tantivy to index. Done on all words
    joined by spaces at once: one word at a time took minutes of Python at 1M chunks."""
    joined = " ".join(lowered)
    spans: list[list[int]] = []
    at, size = 0, len(joined)
    while separator := _SEPARATOR.search(joined, at):
        start = joined.rfind(" ", 0, separator.start())  # the space before the word, or -1
        at = joined.find(" ", separator.start())
        at = size if at < 0 else at
        for _ in range(2):  # two words before
            if start > 0:
                start = joined.rfind(" ", 0, start)
        end = at
        for _ in range(2):  # two words after
            if end < size:
                end = joined.find(" ", end + 1)
                end = size if end < 0 else end
        if spans and start < spans[-1][1]:
            spans[-1][1] = end
        else:
            spans.append([max(start, 0), end])
    near = f" {NAME_GAP} ".join(" ".join(_ALNUM_RUN.findall(joined, a, b)) for a, b in spans)
    return f"{joined.translate(_SEPARATORS)} {NAME_GAP} {near}"


class _Table:
    """What each distinct word of a text maps to, made once per word and kept in a table of at
    most ``limit`` words (then emptied): a cold build meets the same words again and again."""

    def __init__(self, limit: int = WORD_TABLE) -> None:
        self.limit = limit
        self._of: dict[str, Any] = {}

    def _filled(self, distinct: set[str]) -> dict[str, Any]:
        """The table, holding every word of ``distinct``."""
        table = self._of
        if len(table) > self.limit:
            table.clear()
        for word in distinct.difference(table):
            table[word] = self._make(word)
        return table

    def _make(self, word: str) -> Any:
        raise NotImplementedError


class Stems(_Table):
    """:func:`citeqa.text.term_set` of a text's lowered words."""

    def __call__(self, lowered: list[str]) -> set[str]:
        distinct = set(lowered)
        return set().union(*map(self._filled(distinct).__getitem__, distinct))

    def _make(self, word: str) -> tuple[str, ...]:
        return tuple(word_terms(word))  # a tuple: a quarter of a frozenset's bytes


class Tokens(_Table):
    """:func:`analyzer`'s tokens of a text. An ASCII text is cut and lowered in Python, where
    both regexes mean the same, and each word mapped to the analyzer's token of that word
    alone (a stem, or none for a stop word); another text is analyzed whole."""

    def __init__(self, limit: int = WORD_TABLE) -> None:
        super().__init__(limit)
        self._analyzer = analyzer()

    def __call__(self, text: str) -> list[str]:
        if not text.isascii():
            return list(self._analyzer.analyze(text))
        words = _TOKEN.findall(text.lower())
        return [token for token in map(self._filled(set(words)).__getitem__, words) if token]

    def _make(self, word: str) -> str:
        made = self._analyzer.analyze(word)
        return made[0] if made else ""


class Fielder:
    """Makes :class:`DocumentFields` (holds its word tables: one a process)."""

    def __init__(self) -> None:
        self._stems, self._tokens = Stems(), Tokens()

    def document(self, doc_id: str, rows: list[Row]) -> DocumentFields:
        if not rows:  # the document is gone
            return DocumentFields(doc_id, [], "", [], b"", b"")
        chunks: list[ChunkFields] = []
        stems: set[str] = set()
        for chunk_id, text, metadata in rows:
            lowered = lowered_words(text)
            terms = self._stems(lowered)
            stems |= terms
            tokens = self._tokens(with_compounds(text))
            record = json.dumps({"text": text, "metadata": metadata}).encode()
            # stems in any order: that field indexes neither positions nor frequencies
            names = _name_keys(lowered)
            joined = f" {'  '.join(tokens)} ".encode()
            chunks.append(
                (chunk_id, " ".join(tokens), len(tokens), joined, " ".join(terms), names, record)
            )
        found = abbreviations(text for _, text, _ in rows)
        aliases = [f"{short}{ALIAS}{long}" for short, longs in found.items() for long in longs]
        summary = json.dumps(summarise(doc_id, [m for _, _, m in rows])).encode()
        first = first_chunk((chunk_id, metadata) for chunk_id, _, metadata in rows).encode()
        return DocumentFields(doc_id, chunks, " ".join(stems), aliases, summary, first)


def add(fields: DocumentFields, chunk_writer: Any, doc_writer: Any) -> None:
    """Hand a document's fields to the writers (nothing for a document without chunks)."""
    doc_id = fields.doc_id
    for chunk_id, terms, dl, tokens, stems, names, record in fields.chunks:
        chunk_writer.add_document(
            tantivy.Document(
                id=chunk_id,
                doc_id=doc_id,
                terms=terms,
                dl=dl,
                tokens=tokens,
                stems=stems,
                names=names,
                record=record,
            )
        )
    if not fields.chunks:
        return
    document = tantivy.Document(
        doc_id=doc_id, stems=fields.stems, summary=fields.summary, first=fields.first
    )
    document.add_unsigned("draw", draw(doc_id))  # typed: a keyword's int may be taken as signed
    for alias in fields.aliases:
        document.add_text("aliases", alias)
    doc_writer.add_document(document)


def fielded(documents: Iterable[tuple[str, list[Row]]]) -> list[DocumentFields]:
    """The fields of ``documents``, made in this process (a worker's task)."""
    fielder = _fielder()
    return [fielder.document(doc_id, rows) for doc_id, rows in documents]


@lru_cache(maxsize=1)
def _fielder() -> Fielder:
    return Fielder()
