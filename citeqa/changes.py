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
follower's poll cost the searches at that size while it read the log so (BENCHMARKS.md, Scale:
earlier runs).

Which records are new is told without that pass: each writer keeps one record of its own, its
*head*, in the small collection ``<name>__heads`` (the id is the writer's; it says how many
records the writer appended and names its last :data:`RECENT`), upserted after the records it
names. Only its writer writes it, so two writers appending at once overwrite nothing. A
follower (:class:`Tail`) lists the heads on each poll (the collection holds one record per
writer process: a read of a few records) and reads the records it has not seen by id (2 ms at
any size). It reads by ``logged_at`` only when the heads cannot say: its first poll, a writer
further behind than :data:`RECENT`, and records no head explains (a writer of an older version,
one that died between its records and its head), which a count of the log every
:data:`COUNT_EVERY_S` finds. A writer starting to append drops heads unchanged for
:data:`HEAD_RETAIN_S`. Each append also still upserts the shared ``head`` record in the log (the
id of its last record), which the followers of the previous version read.

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
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chromadb.api.models.Collection import Collection
from chromadb.api.types import Where

CHANGES_SUFFIX = "__changes"
HEADS_SUFFIX = "__heads"  # the writers' heads: one record each
LOGGED_AT = "logged_at"
GENESIS_ID = "0" * 20 + "-genesis"  # this log holds every document change of its collection
HEAD_ID = "0" * 20 + "-head"  # the last record appended, for followers of the previous version
RECENT = 256  # record ids a writer's head names: a follower further behind reads by logged_at
HEAD_RETAIN_S = 86_400.0  # a head unchanged this long is dropped when a writer starts appending
COUNT_EVERY_S = 30.0  # a follower counts the log this often: the net for records no head names
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


@dataclass(frozen=True)
class Head:
    """What one writer appended: ``appended`` records in all, the last ones ``recent``."""

    appended: int
    recent: tuple[str, ...]


class ChangeLog:
    """Appends to, and reads, the change collection of one index."""

    def __init__(self, collection: Collection, heads: Collection) -> None:
        self.collection = collection
        self.heads = heads
        self.writer = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._last = 0.0
        self._lock = threading.Lock()
        self._head_lock = threading.Lock()  # this writer's head moves in the order it says
        self._appended = 0
        self._recent: deque[str] = deque(maxlen=RECENT)

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
        if records:  # after the records they name: a reader that sees them finds those
            self._move_head([c.id for c in records])
            self.collection.upsert(
                ids=[HEAD_ID], embeddings=[_NO_VECTOR], metadatas=[{"last": records[-1].id}]
            )

    def _move_head(self, ids: list[str]) -> None:
        with self._head_lock:
            if not self._appended:
                self._drop_old_heads()
            self._appended += len(ids)
            self._recent.extend(ids)
            self.heads.upsert(
                ids=[self.writer],
                embeddings=[_NO_VECTOR],
                metadatas=[{"appended": self._appended, "at": time.time()}],
                documents=[json.dumps(list(self._recent))],
            )

    def _drop_old_heads(self) -> None:
        got = self.heads.get(include=["metadatas"])
        rows = zip(got["ids"], got["metadatas"] or [], strict=True)
        old = [i for i, m in rows if _number(m, "at") < time.time() - HEAD_RETAIN_S]
        if old:
            self.heads.delete(ids=old)

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

    def writers(self) -> dict[str, Head]:
        """Every writer's head, by writer."""
        got = self.heads.get(include=["metadatas", "documents"])
        rows = zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True)
        return {w: Head(int(_number(m, "appended")), tuple(json.loads(d))) for w, m, d in rows}

    def read_ids(self, ids: Sequence[str]) -> list[Change] | None:
        """The records ``ids``, sorted by id; None when one of them is not in the log."""
        got = self.collection.get(ids=list(ids), include=["metadatas", "documents"])
        if len(got["ids"]) < len(set(ids)):
            return None
        rows = zip(got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True)
        return sorted((_change(*row) for row in rows), key=lambda c: c.id)

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


class Tail:
    """What a follower reads of the log on each poll: the records appended since its last
    poll, by id where the writers' heads name them, by ``logged_at`` where they cannot."""

    def __init__(self, log: ChangeLog) -> None:
        self.log = log
        self.passes = 0  # reads by logged_at: each a pass of Chroma over the whole log
        self._known: dict[str, int] | None = None  # each writer's appended, as last read
        self._other = -1  # records no head counts, at the last count
        self._count_due = 0.0  # when a poll counts the log again (monotonic)

    def mark(self) -> None:
        """Take what the heads say now as read: the records appended before are not new."""
        self._known = {w: h.appended for w, h in self.log.writers().items()}

    def new(self, since: float) -> list[Change]:
        """The records appended since the last call or :meth:`mark`, sorted by id (some may
        have been read before: a follower drops those by id); ``since``: where a read by
        ``logged_at`` starts, when the heads cannot name them."""
        counted = self._count_if_due()  # before the heads: see _unexplained
        heads, known = self.log.writers(), self._known
        whole = known is None or self._unexplained(counted, heads)
        wanted: list[str] = []
        for writer, head in heads.items():
            new = head.appended - (known or {}).get(writer, 0)
            whole = whole or new > len(head.recent)
            wanted += head.recent[len(head.recent) - new :] if new > 0 else ()
        self._known = {w: h.appended for w, h in heads.items()}
        if not whole and wanted:
            found = self.log.read_ids(wanted)
            if found is not None:
                return found
        if whole or wanted:
            self.passes += 1
            return self.log.read(since)
        return []

    def _count_if_due(self) -> int | None:
        """The log's record count every COUNT_EVERY_S (a pass over the log), else None."""
        now = time.monotonic()
        if now < self._count_due:
            return None
        self._count_due = now + COUNT_EVERY_S
        return self.log.collection.count()

    def _unexplained(self, counted: int | None, heads: Mapping[str, Head]) -> bool:
        """Whether the log holds records no head counts that it did not hold at the last count.
        The count comes before the heads, so a record appended between the two can only lower
        the difference; the highest difference seen is the reference."""
        if counted is None:
            return False
        other = counted - sum(h.appended for h in heads.values())
        moved, self._other = other > self._other >= 0, max(self._other, other)
        return moved


def _number(metadata: Mapping[str, object], key: str) -> float:
    value = metadata.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


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
