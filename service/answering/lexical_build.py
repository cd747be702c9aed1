"""What a cold build of the tantivy index (:mod:`service.answering.lexical`) reads Chroma with.

Chroma's local store answers a ``get`` with a ``where`` filter by grouping every record of the
collection with all its metadata and its document (SQL ``GROUP BY ... HAVING``): each such read
costs the whole collection, however few records it returns. A cold build that read the
documents the change log names, a few hundred per ``where doc_id $in`` read, so read the whole
collection once per batch (and the log once per window): quadratic in the collection. So a cold
build lists the collection's ids once (one read, no filter: a walk of the primary key), reads
the chunks by id in batches (an index lookup each), the next batch while this one is indexed,
and keeps each document's newest complete version with :class:`Versions`, as
:func:`citeqa.store.visible_chunks` does over a whole read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from chromadb.api.types import GetResult

from citeqa.store import DOC_CHUNKS, INGESTED_AT
from service.answering.lexical_fields import Row

Key = TypeVar("Key")


def read_ahead(
    read: Callable[[Key], GetResult], keys: Iterable[Key]
) -> Iterator[tuple[Key, GetResult]]:
    """Each key with what ``read`` returns for it, the next key read in a thread while the
    caller indexes this one: the Chroma client spends a read waiting on the server (or its Rust
    core), not in Python."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lexical-read") as pool:
        pending: tuple[Key, Future[GetResult]] | None = None
        for key in keys:
            future = pool.submit(read, key)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (key, future)
        if pending is not None:
            yield pending[0], pending[1].result()


class Versions:
    """:func:`citeqa.store.visible_chunks` over a collection read in batches: each document's
    newest complete version, handed out as soon as it is whole (a version is written in one
    go, so it is mostly whole within one batch) and again whenever a newer complete version of
    the document turns up later in the read.

    A document that :func:`~citeqa.store.visible_chunks` could judge only from all its chunks
    at once (chunks without a version's chunk count, a version with more chunks than its
    count) is left :attr:`doubtful`, for the caller to read whole."""

    def __init__(self) -> None:
        self._partial: dict[tuple[str, str], list[Row]] = {}  # versions not whole yet
        self._shown: dict[str, tuple[str, float]] = {}  # doc id -> (hash, written) handed out
        self._passed: set[tuple[str, str]] = set()  # whole versions older than the one shown
        self.doubtful: set[str] = set()

    def add(self, got: GetResult) -> Iterator[tuple[str, list[Row], bool]]:
        """``(doc_id, rows, replaces)`` for each newest version ``got`` completes; ``replaces``:
        an older version of the document was handed out before."""
        texts, metadatas = got["documents"] or [], got["metadatas"] or []
        for chunk_id, text, meta in zip(got["ids"], texts, metadatas, strict=True):
            if meta is None:  # caught while being deleted
                continue
            doc_id = str(meta["doc_id"])
            key = (doc_id, str(meta.get("doc_hash", "")))
            if doc_id in self.doubtful:
                continue
            shown = self._shown.get(doc_id)
            whole = shown is not None and shown[0] == key[1]
            count: Any = meta.get(DOC_CHUNKS, 0)
            if whole or key in self._passed or int(count) < 1:
                self.doubtful.add(doc_id)  # no chunk count, or more chunks than it says
                continue
            rows = self._partial.setdefault(key, [])
            rows.append((chunk_id, text, meta))
            if len(rows) < int(rows[0][2][DOC_CHUNKS]):
                continue
            del self._partial[key]
            written = max(float(m.get(INGESTED_AT, 0.0)) for _, _, m in rows)
            held = self._shown.get(doc_id)
            if held is not None and written <= held[1]:
                self._passed.add(key)
                continue
            if held is not None:
                self._passed.add((doc_id, held[0]))
            self._shown[doc_id] = (key[1], written)
            yield doc_id, rows, held is not None
