"""The change log of one index: what documents changed, for readers that follow the collection.

Chroma has no change feed and no cursor (its ``get`` pages only by a growing offset, which
reads every skipped row again), so every writer appends one record per document change to
the small collection ``<name>__changes``: ingest once a document's new version is complete
and before its old version is deleted; every delete path once the document is gone. A record
says only *which* document changed (``doc_id``), its version (``doc_hash``, ``doc_chunks``: 0
for a delete; as the record's document text, the version's chunk ids in JSON, when the writer
said them) and when (``logged_at``); a follower reads that version's chunks by id (or, when they
are gone or not said, the document's by ``doc_id``) and shows its newest complete version
(:func:`citeqa.store.visible_chunks`), so applying a record twice, or two records of a
document in either order, ends in the same state.

Record ids sort by time, then writer: ``<logged_at in ns, 20 digits>-<writer>-<counter>``.
Readers take the records logged since a time: one ``logged_at >= since`` condition, in pages
by offset within what matches (a range written as two conditions, ``$and`` of ``$gte`` and
``$lt``, cost 29 ms for one record of a 50,000-record log, one condition 3 ms). Even one
condition costs Chroma a pass over the whole log, not what matches: 40 ms for no record of the
500,000-record log of the bench's 1M store, and ``count()`` 30 ms (session 20; any filtered
``get`` is, 80 ms on its 1M chunks, where ``get(ids=...)`` takes 2 ms). That is what a
follower's poll costs the searches at that size (BENCHMARKS.md, Scale: earlier runs).

Each append also upserts one ``head`` record naming its last record, which a reader reads by id
(2 ms at any size) to tell whether anything was logged since it last looked; the ``head`` has
no ``logged_at``, so no read of the records meets it. A log written by an older version has
none until its next append (readers then count the log, as before).

A log made with its collection holds every document ever written (the ``genesis`` record says
so); one added to an older store does not, until a reader :meth:`ChangeLog.backfill` s it once
from a full read of the chunks.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chromadb.api.models.Collection import Collection
from chromadb.api.types import Where

CHANGES_SUFFIX = "__changes"
LOGGED_AT = "logged_at"
GENESIS_ID = "0" * 20 + "-genesis"  # this log holds every document change of its collection
HEAD_ID = "0" * 20 + "-head"  # names the last record appended (metadata "last")
PAGE = 1000  # records per read
_NO_VECTOR: Sequence[float] = [1.0]  # Chroma asks for one; records are found by metadata
_MIN_STEP_S = 1e-6  # one writer's records are at least this far apart in time


@dataclass(frozen=True)
class Change:
    """One document changed: ``doc_chunks`` chunks in its new version, 0 when deleted."""

    id: str
    doc_id: str
    doc_hash: str
    doc_chunks: int
    logged_at: float
    chunk_ids: tuple[str, ...] = ()  # of the new version, when the writer said them


class ChangeLog:
    """Appends to, and reads, the change collection of one index."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.writer = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._last = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing

    def append(
        self,
        changes: Iterable[tuple[str, str, int]],
        max_batch: int = 1000,
        chunk_ids: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Log ``(doc_id, doc_hash, doc_chunks)`` changes, in that order; ``chunk_ids``: the
        new versions' chunk ids by document, which a reader then reads by id (a read filtered
        by ``doc_id`` costs Chroma a pass over the whole collection)."""
        ids = chunk_ids or {}
        records = [self._record(*change, ids.get(change[0], ())) for change in changes]
        for start in range(0, len(records), max_batch):
            group = records[start : start + max_batch]
            self.collection.upsert(
                ids=[c.id for c in group],
                embeddings=[_NO_VECTOR] * len(group),
                metadatas=[_metadata(c) for c in group],
                documents=[json.dumps(c.chunk_ids) for c in group],  # no size limit there
            )
        if records:  # after the records it names: a reader that sees it finds them
            self.collection.upsert(
                ids=[HEAD_ID], embeddings=[_NO_VECTOR], metadatas=[{"last": records[-1].id}]
            )

    def deleted(self, doc_ids: Iterable[str], max_batch: int = 1000) -> None:
        """Log that the documents ``doc_ids`` are gone (call once they are)."""
        self.append(((d, "", 0) for d in sorted(set(doc_ids))), max_batch)

    def _record(
        self, doc_id: str, doc_hash: str, doc_chunks: int, chunk_ids: Sequence[str] = ()
    ) -> Change:
        with self._lock:  # strictly increasing per writer: its records keep their order
            now = max(time.time(), self._last + _MIN_STEP_S)
            self._last = now
            serial = next(self._counter)
        key = f"{round(now * 1e9):020d}-{self.writer}-{serial:08d}"
        return Change(key, doc_id, doc_hash, doc_chunks, now, tuple(chunk_ids))

    def start(self) -> None:
        """Mark the log complete from here on: called when its collection is created empty."""
        self.collection.upsert(
            ids=[GENESIS_ID],
            embeddings=[_NO_VECTOR],
            metadatas=[{LOGGED_AT: 0.0, "doc_id": "", "doc_hash": "", "doc_chunks": 0}],
        )

    @property
    def complete(self) -> bool:
        """Whether the log holds every document of its collection (see :meth:`start`)."""
        return bool(self.collection.get(ids=[GENESIS_ID], include=[])["ids"])

    # ------------------------------------------------------------------ reading

    def head(self) -> str | None:
        """The id of the last record appended (by any writer), None when no append wrote one."""
        metadatas = self.collection.get(ids=[HEAD_ID], include=["metadatas"])["metadatas"]
        return str(metadatas[0].get("last", "")) if metadatas else None

    def read(self, since: float, until: float | None = None) -> list[Change]:
        """The changes logged in ``[since, until)`` (until: now and later), sorted by id."""
        where: Where = {LOGGED_AT: {"$gte": since}}  # type: ignore[dict-item]
        found: list[Change] = []
        while True:  # records only ever join the log: pages by offset skip none of them
            got = self.collection.get(
                where=where, include=["metadatas", "documents"], limit=PAGE, offset=len(found)
            )
            rows = zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True)
            found += [_change(*row) for row in rows]
            if len(got["ids"]) < PAGE:
                break
        kept = (c for c in found if c.id != GENESIS_ID and (until is None or c.logged_at < until))
        return sorted(kept, key=lambda c: c.id)


def _metadata(change: Change) -> dict[str, str | int | float]:
    return {
        "doc_id": change.doc_id,
        "doc_hash": change.doc_hash,
        "doc_chunks": change.doc_chunks,
        LOGGED_AT: change.logged_at,
    }


def _change(record_id: str, meta: object, document: str | None) -> Change:
    m = dict(meta or {})  # type: ignore[call-overload]
    chunk_ids = tuple(json.loads(document)) if document else ()  # an older writer wrote none
    return Change(
        record_id,
        str(m.get("doc_id", "")),
        str(m.get("doc_hash", "")),
        int(m.get("doc_chunks", 0)),
        float(m.get(LOGGED_AT, 0.0)),
        chunk_ids,
    )
