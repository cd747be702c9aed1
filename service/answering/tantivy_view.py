"""The tantivy index's view: what one search reads (an immutable searcher pair, swapped in
whole after each commit by :class:`service.answering.lexical.TantivyIndex`) and its schemas;
the analyzer and what each chunk's fields hold are :mod:`service.answering.lexical_fields`'.
(Moved out of :mod:`service.answering.lexical`, to keep modules under 450 lines; that module's
docstring describes the index.)
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import tantivy

from citeqa.text import bm25_idf, term_set
from service.answering.corpus import CorpusStats
from service.answering.lexical_fields import ALIAS, analyzer
from service.answering.lexical_views import SCORE_DECIMALS, TIE_MARGIN, Chunk, with_compounds

Phrase = list[str | tuple[int, str]]  # words of a phrase query (a word or its offset and it)
PREFIX_CANDIDATES = 8  # words a name key may begin ("a100" -> "a100s"), checked at most
# bm25s' BM25 ("lucene": Kamphuis et al. 2020), which tantivy's top hits are scored again with:
# tantivy's own (k1 1.2, lengths stored in one byte) ranked a few dev questions differently.
K1, B = 1.5, 0.75
POOL = 4  # times the hits wanted: tantivy's candidates to score again
MAX_DOC_CHUNKS = 100_000  # chunks of one document read back, at most


TOKENS = "tokens"  # the tokenizer of analyzed text: split on whitespace, nothing more


def tokens_analyzer() -> tantivy.TextAnalyzer:
    """Splits text :func:`analyzer` made back into its tokens (they never hold whitespace)."""
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()


def chunk_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("doc_id", tokenizer_name="raw", index_option="basic")
    # analyze()'s tokens, joined by spaces: a chunk is analyzed once, in Python's thread, not
    # again by tantivy's indexing thread (analysis is most of the indexing)
    builder.add_text_field("terms", tokenizer_name=TOKENS, index_option="freq")
    builder.add_text_field("stems", tokenizer_name="whitespace", index_option="basic")
    # a chunk's words squashed, in order: a name in several words is a phrase of them
    builder.add_text_field("names", tokenizer_name="whitespace", index_option="position")
    builder.add_integer_field("dl", stored=True, fast=True)  # tokens in "terms": BM25's length
    # the "terms" tokens, " a  b  a ": each one's frequency is one count of " a " (in C)
    builder.add_bytes_field("tokens", stored=True, indexed=False)
    builder.add_bytes_field("record", stored=True, indexed=False)  # text and metadata
    return builder.build()


def doc_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    # fast: the documents listing pages through them in the order of their ids
    builder.add_text_field("doc_id", tokenizer_name="raw", index_option="basic", fast=True)
    builder.add_text_field("stems", tokenizer_name="whitespace", index_option="basic")
    builder.add_text_field("aliases", tokenizer_name="raw", index_option="basic")
    builder.add_bytes_field("summary", stored=True, indexed=False)  # citeqa.catalog.summarise
    builder.add_bytes_field("first", stored=True, indexed=False)  # its first chunk's id
    builder.add_unsigned_field("draw", fast=True)  # lexical_views.draw: the sample's order
    return builder.build()


@dataclass(frozen=True)
class IndexStats(CorpusStats):
    """:class:`CorpusStats` read from the index's term dictionaries instead of tables held in
    memory. Counts of a term include chunks deleted since the last merge of their segment."""

    chunks: Any = field(default=None, compare=False, repr=False)  # the chunks' searcher
    docs: Any = field(default=None, compare=False, repr=False)  # the documents' searcher
    chunk_count: int = 0

    @classmethod
    def of(cls, chunks: tantivy.Searcher, docs: tantivy.Searcher) -> IndexStats:
        n = chunks.num_docs
        return cls(
            default_idf=bm25_idf(0, n),
            documents=docs.num_docs,
            chunks=chunks,
            docs=docs,
            chunk_count=n,
        )

    def weight(self, term: str) -> float:
        held = self.chunks.doc_freq("stems", term) if term else 0
        if not held:
            return self.default_idf
        return bm25_idf(held, self.chunk_count)

    def name_documents(self, name: str) -> int:
        return min((self.docs.doc_freq("stems", t) for t in term_set(name)), default=0)

    def spellings(self, name: str) -> list[str]:
        prefix = name.lower() + ALIAS
        forms = self.docs.terms_with_prefix("aliases", prefix)
        return [name, *sorted({term.removeprefix(prefix) for term, _ in forms})]


class TantivyView:
    """One committed state of a :class:`TantivyIndex` (a :class:`LexicalView`)."""

    def __init__(
        self,
        chunks: tantivy.Searcher,
        docs: tantivy.Searcher,
        schema: tantivy.Schema,
        doc_schema: tantivy.Schema,
    ) -> None:
        self.searcher, self.schema = chunks, schema
        self.docs, self.doc_schema = docs, doc_schema
        self.stats: CorpusStats = IndexStats.of(chunks, docs)
        self._analyzer = analyzer()
        total = {"total": {"sum": {"field": "dl"}}}
        tokens = chunks.aggregate(tantivy.Query.all_query(), total)["total"]["value"] or 0.0
        self._average_length = tokens / chunks.num_docs if chunks.num_docs else 1.0

    @property
    def empty(self) -> bool:
        return self.searcher.num_docs == 0

    def search(self, question: str, k: int) -> list[Chunk]:
        asked = Counter(self._analyzer.analyze(with_compounds(question)))
        if not asked or self.empty:
            return []
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "terms", t))
                for t in asked
            ]
        )
        hits = self.searcher.search(query, POOL * (k + TIE_MARGIN), count=False).hits
        n = self.searcher.num_docs
        idf = {}
        for term in asked:
            held = self.searcher.doc_freq("terms", term)
            idf[term] = bm25_idf(held, n)
        scored = []
        padded = {term: f" {term} ".encode() for term in asked}
        for _, address in hits:
            doc = self.searcher.doc(address)
            tokens = doc["tokens"][0]
            norm = K1 * ((1 - B) + B * doc["dl"][0] / self._average_length)
            score = 0.0
            for term, weight in asked.items():
                if f := tokens.count(padded[term]):
                    score += weight * idf[term] * f / (norm + f)
            scored.append((round(score, SCORE_DECIMALS), doc["id"][0], doc))
        # As the snapshot: ordered by the score rounded past float noise, then by chunk id.
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [_chunk(doc) for score, _, doc in scored[:k] if score > 0]

    def chunks(self, ids: list[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        query = tantivy.Query.term_set_query(self.schema, "id", ids)
        hits = self.searcher.search(query, len(ids), count=False).hits
        return {c.id: c for c in (_chunk(self.searcher.doc(address)) for _, address in hits)}

    def has_key(self, key: str) -> bool:
        """A word begun by ``key`` ("a100" -> "a100s"), or two or three whole words in a row
        that ``key`` is written as ("humaneval" -> "Human Eval")."""
        candidates = self.searcher.terms_with_prefix("names", key, limit=PREFIX_CANDIDATES)
        if any(self._holds("names", term) for term, _ in candidates):
            return True
        for words in self._cuts(key):
            query = tantivy.Query.phrase_query(self.schema, "names", words)
            if self.searcher.search(query, 1, count=False).hits:
                return True
        return False

    def held_words(self, keys: set[str]) -> set[str]:
        """Looked up in the term dictionary, then (the few it holds) in the chunks not
        deleted."""
        listed = [k for k in keys if self.searcher.doc_freq("names", k) > 0]
        return {k for k in listed if self._holds("names", k)}

    def _cuts(self, key: str) -> Iterator[Phrase]:
        """``key`` cut into two or three words the dictionary holds: few cuts of a key do."""

        @cache  # the cuts share their pieces: each looked up once
        def held(word: str) -> bool:
            return self.searcher.doc_freq("names", word) > 0

        for i in range(1, len(key)):
            first, rest = key[:i], key[i:]
            if not held(first):
                continue
            if held(rest):
                pair: Phrase = [first, rest]
                yield pair
            for j in range(1, len(rest)):
                if held(rest[:j]) and held(rest[j:]):
                    triple: Phrase = [first, rest[:j], rest[j:]]
                    yield triple

    def _holds(self, field_name: str, term: str) -> bool:
        """A chunk not deleted holds the term (the dictionary still counts deleted ones)."""
        query = tantivy.Query.term_query(self.schema, field_name, term)
        return bool(self.searcher.search(query, 1, count=False).hits)

    def knows(self, ids: list[str]) -> bool:
        wanted = set(ids)
        if not wanted:
            return True
        query = tantivy.Query.term_set_query(self.schema, "id", list(wanted))
        return len(self.searcher.search(query, len(wanted), count=False).hits) == len(wanted)

    def doc_chunk_ids(self, doc_id: str) -> set[str]:
        """The ids of the chunks this view shows of the document."""
        query = tantivy.Query.term_query(self.schema, "doc_id", doc_id)
        hits = self.searcher.search(query, MAX_DOC_CHUNKS, count=False).hits
        return {self.searcher.doc(address)["id"][0] for _, address in hits}

    def documents_after(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Read in the order of the ids' fast field, from the first id after ``after``: the
        ids after it are those that begin with it, then for ``i`` from its length down those
        that share its first ``i`` characters and go on with a greater one (:func:`_after`:
        a regex query each, over the term dictionary); each query's ids sort before the next
        one's. A page costs some milliseconds whatever the number of documents."""
        if self.docs.num_docs == 0:
            return []
        if after is None:
            return self._in_order(tantivy.Query.all_query(), limit)
        found: list[dict[str, Any]] = []
        for pattern in _after(after):
            if len(found) >= limit:
                break
            try:
                query = tantivy.Query.regex_query(self.doc_schema, "doc_id", pattern)
            except ValueError:  # over tantivy's 1000 states: an id of about 900 bytes or more
                return self._scan_after(after, limit)
            found += self._in_order(query, limit - len(found))
        return found

    def document(self, doc_id: str) -> dict[str, Any] | None:
        query = tantivy.Query.term_query(self.doc_schema, "doc_id", doc_id)
        hits = self.docs.search(query, 1, count=False).hits
        return self._summary(hits[0][1]) if hits else None

    def sample(self, n: int) -> list[str]:
        if n <= 0 or self.docs.num_docs == 0:
            return []
        everything, order = tantivy.Query.all_query(), tantivy.Order.Asc
        hits = self.docs.search(everything, n, False, "draw", 0, order).hits
        return [self.docs.doc(address)["first"][0].decode() for _, address in hits]

    def _in_order(self, query: tantivy.Query, limit: int) -> list[dict[str, Any]]:
        return [self._summary(address) for _, address in self._by_id(query, limit)]

    def _scan_after(self, after: str, limit: int) -> list[dict[str, Any]]:
        """:meth:`documents_after` by a pass over every document's id."""
        hits = self._by_id(tantivy.Query.all_query(), self.docs.num_docs)
        chosen = [address for doc_id, address in hits if doc_id > after][:limit]
        return [self._summary(address) for address in chosen]

    def _by_id(self, query: tantivy.Query, limit: int) -> list[tuple[Any, tantivy.DocAddress]]:
        order = tantivy.Order.Asc
        return self.docs.search(query, limit, False, "doc_id", 0, order).hits

    def _summary(self, address: tantivy.DocAddress) -> dict[str, Any]:
        summary: dict[str, Any] = json.loads(self.docs.doc(address)["summary"][0])
        return summary


def _after(text: str) -> Iterator[str]:
    """Regexes (tantivy's, whole terms) of the strings after ``text`` in code point order (that
    of UTF-8 bytes, which tantivy sorts by), in groups that sort one after the other: those
    that begin with ``text``, then for ``i`` from its length down, those that begin with its
    first ``i`` characters and go on with a greater one. Every character is written as an
    escape, so no character of an id is syntax."""
    escaped = [_escape(ord(char)) for char in text]
    yield "".join(escaped) + "(?s:.+)"
    for i in range(len(text) - 1, -1, -1):
        following = ord(text[i]) + 1
        if following in _SURROGATES:
            following = _SURROGATES.stop
        if following <= sys.maxunicode:
            greater = f"[{_escape(following)}-{_escape(sys.maxunicode)}]"
            yield "".join(escaped[:i]) + greater + "(?s:.*)"


def _escape(code_point: int) -> str:
    return f"\\x{{{code_point:x}}}"


_SURROGATES = range(0xD800, 0xE000)  # no character of a str of an id: skipped over


def _chunk(doc: tantivy.Document) -> Chunk:
    record = json.loads(doc["record"][0])
    return Chunk(doc["id"][0], record["text"], record["metadata"])
