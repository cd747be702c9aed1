"""Lexical views: what the retriever's BM25 ranking searches, and its in-process index.

A :class:`LexicalIndex` gives each request one consistent :class:`LexicalView`. Two implement
it: :class:`SnapshotIndex` here (bm25s, in process memory, rebuilt from the whole chunk
collection when its record count changes, or when Chroma returns an id the snapshot does not
know or lacks one it holds, checked at most every ``refresh_s`` seconds), and the tantivy index
of :mod:`service.answering.lexical`, which follows the change log. (Moved out of
:mod:`service.answering.retrieval` unchanged, to keep modules under 450 lines.)
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import bm25s
from chromadb.api.types import Where

from citeqa.catalog import summarise
from citeqa.store import INGESTED_AT, Index, get_all, visible_chunks
from citeqa.text import squashed, stemmer, words
from service.answering.corpus import CorpusStats

# possessive: a run of word characters is never given back (a shorter one is followed by a word
# character, which neither "[-./]" nor "\b" accepts), so no letter is tried twice
_COMPOUND = re.compile(r"\b\w++(?:[-./]\w++)+\b")
_COMPOUND_SEPARATORS = str.maketrans("", "", "-./")
_SEPARATOR = re.compile(r"[-./]\w")  # where a compound goes on


def with_compounds(text: str) -> str:
    """Adds each hyphenated name once more as one token ("DeepSeek-V3" -> "deepseekv3"), so
    BM25 tells DeepSeek-V3 from DeepSeek-VL2 instead of matching only "deepseek" and "v3"."""
    joined = [name.translate(_COMPOUND_SEPARATORS) for name in compounds(text)]
    return f"{text} {' '.join(joined)}" if joined else text


def compounds(text: str) -> list[str]:
    """``_COMPOUND.findall(text)``, tried only where a match can start: at the word before a
    separator followed by a word character, so the pattern is not tried at every letter (a
    scan for the separators is a C loop; most letters of a text are not one)."""
    found: list[str] = []
    at = 0
    while separator := _SEPARATOR.search(text, at):
        start = separator.start()
        while start > at and _is_word(text[start - 1]):
            start -= 1
        if start == separator.start():  # no word before it: "-5", "--x"
            at = start + 1
            continue
        match = _COMPOUND.match(text, start)  # a word, then the separator and a word: a match
        assert match is not None
        found.append(match.group())
        at = match.end()
    return found


def _is_word(char: str) -> bool:
    """A character of ``\\w`` (str patterns: alphanumeric or "_")."""
    return char.isalnum() or char == "_"


# BM25 scores equal to this many decimals are a tie (float32 sums differ in the last bits between
# SIMD kernels), broken by chunk id; TIE_MARGIN more candidates are read so that a tie across
# the k-th place is broken the same way everywhere.
SCORE_DECIMALS = 4
TIE_MARGIN = 10
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import


@dataclass(frozen=True)
class Chunk:
    """A chunk as a lexical view holds it."""

    id: str
    text: str
    metadata: dict[str, Any]


class LexicalView(Protocol):
    """One consistent state of the lexical index: every answer of a request comes from one."""

    stats: CorpusStats

    @property
    def empty(self) -> bool: ...

    def search(self, question: str, k: int) -> list[Chunk]:
        """The k best BM25 chunks, ties broken by chunk id (:data:`SCORE_DECIMALS`)."""
        ...

    def chunks(self, ids: list[str]) -> dict[str, Chunk]:
        """Those of ``ids`` this view shows (one complete version per document)."""
        ...

    def has_key(self, key: str) -> bool:
        """Some chunk mentions ``key`` (a squashed name, :func:`citeqa.text.name_keys`)."""
        ...

    def held_words(self, keys: set[str]) -> set[str]:
        """Those of the squashed words ``keys`` that some chunk holds as a word."""
        ...

    def knows(self, ids: list[str]) -> bool:
        """Whether this view was made after the chunks ``ids`` were written."""
        ...

    def documents_after(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` documents this view shows whose id sorts after ``after`` (from
        the first: None), by id, as :func:`citeqa.catalog.summarise` describes them."""
        ...

    def document(self, doc_id: str) -> dict[str, Any] | None:
        """The document as :func:`citeqa.catalog.summarise` describes it, if this view shows it."""
        ...

    def sample(self, n: int) -> list[str]:
        """The first chunk of ``n`` documents this view shows (all, if it shows fewer): those
        whose :func:`draw` is least, so every replica draws the same ones."""
        ...


class LexicalIndex(Protocol):
    """Where a retriever gets its current :class:`LexicalView` from."""

    @property
    def warmed(self) -> bool: ...

    def view(self) -> LexicalView:
        """The current view; the first call may build it, later ones never wait on an update
        (:class:`SnapshotIndex` does: it rebuilds in the caller)."""
        ...

    def refresh(self) -> None:
        """This process changed the collection: the next :meth:`view` shows it."""
        ...

    def stale(self, ids: Iterable[str]) -> None:
        """A search saw Chroma and the view disagree on the chunks ``ids`` (written after the
        view, or deleted since); must not wait."""
        ...


class _Snapshot:
    """A :class:`LexicalView` held whole in memory (bm25s)."""

    def __init__(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> None:
        self.ids, self.texts, self.metadatas = ids, texts, metadatas
        self.position = {cid: i for i, cid in enumerate(ids)}  # once, not per query (100k: 40 ms)
        self.known: frozenset[str] = frozenset(ids)  # every id in the collection, shown or not
        self.retriever = bm25s.BM25()
        self.stats = CorpusStats.build(texts, [str(m.get("doc_id", "")) for m in metadatas])
        # For names the corpus never mentions: every word squashed (the usual, quick answer),
        # and the whole corpus squashed, for names written across words ("Human Eval").
        self.vocabulary = frozenset(squashed(w) for t in texts for w in words(t))
        self.squashed = "|".join(squashed(t) for t in texts)
        if texts:
            tokens = bm25s.tokenize(
                [with_compounds(t) for t in texts],
                stopwords="en",
                stemmer=stemmer(),
                show_progress=False,
            )
            self.retriever.index(tokens, show_progress=False)

    @property
    def empty(self) -> bool:
        return not self.ids

    def search(self, question: str, k: int) -> list[Chunk]:
        if not self.texts:
            return []
        tokens = bm25s.tokenize(
            [with_compounds(question)],
            stopwords="en",
            stemmer=stemmer(),
            show_progress=False,
            allow_empty=True,
        )
        # bm25s picks its top k with numpy's argpartition, whose order among equal scores
        # depends on the CPU's SIMD kernel (AVX-512 and AVX2 disagree): two chunks of one paper
        # often score the same. So take a margin past k, and order by the score rounded past
        # float noise, then by chunk id: the same ranking on every machine.
        wanted = min(k + TIE_MARGIN, len(self.texts))
        docs, scores = self.retriever.retrieve(tokens, k=wanted, show_progress=False)
        found = [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        found.sort(key=lambda hit: (-round(hit[1], SCORE_DECIMALS), self.ids[hit[0]]))
        return [self._chunk(i) for i, _ in found[:k]]

    def chunks(self, ids: list[str]) -> dict[str, Chunk]:
        return {cid: self._chunk(self.position[cid]) for cid in ids if cid in self.position}

    def _chunk(self, i: int) -> Chunk:
        return Chunk(self.ids[i], self.texts[i], self.metadatas[i])

    def has_key(self, key: str) -> bool:
        return key in self.vocabulary or key in self.squashed

    def held_words(self, keys: set[str]) -> set[str]:
        return keys & self.vocabulary

    def knows(self, ids: list[str]) -> bool:
        return self.known.issuperset(ids)

    def documents_after(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        ids = self._documents.ids
        start = bisect.bisect_right(ids, after) if after is not None else 0
        return [self._documents.summaries[doc_id] for doc_id in ids[start : start + limit]]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        return self._documents.summaries.get(doc_id)

    def sample(self, n: int) -> list[str]:
        return self._documents.drawn[:n]

    @cached_property
    def _documents(self) -> _Documents:
        """Made at the first call that wants them."""
        rows: dict[str, list[int]] = {}
        for i, meta in enumerate(self.metadatas):
            rows.setdefault(str(meta["doc_id"]), []).append(i)
        summaries = {d: summarise(d, [self.metadatas[i] for i in at]) for d, at in rows.items()}
        drawn = [
            first_chunk((self.ids[i], self.metadatas[i]) for i in rows[d])
            for d in sorted(rows, key=draw)
        ]
        return _Documents(sorted(rows), summaries, drawn)


@dataclass(frozen=True)
class _Documents:
    """A snapshot's documents: ids sorted, summaries by id, first chunks in the order drawn."""

    ids: list[str]
    summaries: dict[str, dict[str, Any]]
    drawn: list[str]


def draw(doc_id: str) -> int:
    """A document's place in the sample of :meth:`LexicalView.sample`: a hash of its id
    (unsigned, 64 bits), the same in every process."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")


def first_chunk(chunks: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """The id of a document's first chunk of ``chunks`` (id, metadata): the least chunk_index
    (0 where it is not recorded), then the least id."""
    return min(chunks, key=lambda chunk: (int(chunk[1].get("chunk_index", 0)), chunk[0]))[0]


class SnapshotIndex:
    """The BM25 snapshot of the whole collection, rebuilt when the collection's record count
    changes, when it holds a chunk ingested after the snapshot's newest (a document replaced by
    a version of as many chunks keeps the count), or a search saw it differ, checked at most
    every ``refresh_s`` seconds. The rebuild reads every chunk and runs in the caller, under a
    lock: searches wait for it."""

    def __init__(self, index: Index, refresh_s: float = 2.0) -> None:
        self.index = index
        self.refresh_s = refresh_s
        self._snapshot: _Snapshot | None = None
        self._stale = False
        self._count = -1
        self._written_at = 0.0  # the newest ingested_at the snapshot read
        self._checked_at = 0.0
        self._lock = threading.Lock()

    @property
    def warmed(self) -> bool:
        return self._snapshot is not None

    def refresh(self) -> None:
        with self._lock:
            self._stale = True
            self._checked_at = 0.0

    def stale(self, ids: Iterable[str] = ()) -> None:
        self._stale = True  # rebuilt at the next check, refresh_s at most from now

    def view(self) -> _Snapshot:
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now - self._checked_at < self.refresh_s:
                return self._snapshot
            self._checked_at = now
            count = self.index.chunks.count()
            if (
                self._snapshot is None
                or count != self._count
                or self._stale
                or self._written_since()
            ):
                self._stale = False
                self._snapshot = self._load()
                self._count = count
            return self._snapshot

    def _written_since(self) -> bool:
        """Whether a chunk newer than the snapshot's newest is in the collection: one record
        at most, read by a metadata range filter."""
        where: Where = {INGESTED_AT: {"$gt": self._written_at}}  # type: ignore[dict-item]
        return bool(self.index.chunks.get(where=where, limit=1, include=[])["ids"])

    def _load(self) -> _Snapshot:
        chunks = get_all(self.index.chunks, ["documents", "metadatas"])
        ids, texts, metas = chunks.ids, chunks.documents, chunks.metadatas
        order = sorted(visible_chunks(metas), key=lambda i: ids[i])
        snapshot = _Snapshot(
            [ids[i] for i in order], [texts[i] for i in order], [dict(metas[i]) for i in order]
        )
        snapshot.known = frozenset(ids)
        self._written_at = max((float(m.get(INGESTED_AT, 0.0)) for m in metas), default=0.0)
        return snapshot
